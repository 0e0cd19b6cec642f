"""Export files in an S3-compatible bucket (django-storages), against moto's in-process S3.

Needs the optional `s3` extra and moto (`pip install '.[s3]' moto`); skipped without them.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from convadmin.exports.models import Export, Status
from tests.factories import ConversationFactory

pytest.importorskip("storages.backends.s3")
moto = pytest.importorskip("moto")

pytestmark = pytest.mark.django_db


@pytest.fixture
def bucket(settings, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="convadmin-exports")
        settings.STORAGES = {
            **settings.STORAGES,
            "exports": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": "convadmin-exports",
                    "region_name": "us-east-1",
                    "location": "exports",
                    "file_overwrite": False,
                },
            },
        }
        yield boto3.client("s3", region_name="us-east-1")


def test_the_job_puts_the_file_in_the_bucket_and_the_download_reads_it_back(
    bucket, support_client, django_capture_on_commit_callbacks
):
    for name in ("One", "Two", "Three"):
        ConversationFactory(name=name)
    with django_capture_on_commit_callbacks(execute=True):
        support_client.post(reverse("export_start", args=["conversations"]), {"format": "jsonl"})
    export = Export.objects.get()
    assert export.status == Status.DONE, export.error
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="convadmin-exports")["Contents"]]
    assert keys == [f"exports/{export.file_name}"]
    response = support_client.get(reverse("export_download", args=[export.pk]))
    assert len(b"".join(response.streaming_content).splitlines()) == 3
