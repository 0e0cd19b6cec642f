from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def export_storage(settings, tmp_path):
    """Export files in a folder of this test (and their partial files beside it); a job from 3 rows on."""
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "store", "directory_permissions_mode": 0o700},
        },
    }
    settings.EXPORT_TMP_DIR = tmp_path / "partial"
    settings.EXPORT_STREAM_MAX_ROWS = 2
    return tmp_path / "store"
