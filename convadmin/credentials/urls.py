from django.urls import path

from convadmin.credentials import views

urlpatterns = [
    path("", views.credential_list, name="credentials"),
]
