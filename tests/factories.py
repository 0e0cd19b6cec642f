from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from convadmin.conversations.models import Conversation, Status
from convadmin.credentials.models import Credential

TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "f00dfeed" * 4


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = factory.django.Password("correct horse battery")

    @factory.post_generation
    def role(self, create: bool, extracted: str | None, **kwargs) -> None:
        if create and extracted:
            self.groups.add(Group.objects.get(name=extracted))


class CredentialFactory(factory.django.DjangoModelFactory):
    """A Twilio credential by default (no network: tests fake the transport)."""

    class Meta:
        model = Credential
        skip_postgeneration_save = True

    provider = "twilio"
    label = factory.Sequence(lambda n: f"Twilio test {n}")
    settings = factory.LazyFunction(lambda: {"account_sid": TWILIO_SID})
    created_by = factory.SubFactory(UserFactory)

    @factory.post_generation
    def secrets(self, create: bool, extracted: dict[str, str] | None, **kwargs) -> None:
        self.set_secrets(extracted or {"auth_token": TWILIO_TOKEN})
        if create:
            self.save()


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    credential = factory.SubFactory(CredentialFactory)
    provider = factory.LazyAttribute(lambda c: c.credential.provider)
    created_by = factory.SubFactory(UserFactory)
    status = Status.CREATED
    name = factory.Sequence(lambda n: f"Order {n}")
    participants = factory.LazyFunction(lambda: ["alice", "+15558675310"])
    request_body = factory.LazyAttribute(
        lambda c: {"FriendlyName": c.name, "Participant": [{"identity": "alice"}]}
    )
    external_id = factory.Sequence(lambda n: f"CH{n:032x}")
