from django.urls import path

from convadmin.credentials import views

urlpatterns = [
    path("", views.credential_list, name="credentials"),
    path("new/", views.credential_new, name="credential_new"),
    path("<int:pk>/", views.credential_edit, name="credential_edit"),
    path("<int:pk>/secret/", views.credential_secret, name="credential_secret"),
    path("<int:pk>/disable/", views.credential_disable, name="credential_disable"),
    path("<int:pk>/check/", views.credential_check, name="credential_check"),
    path("<int:pk>/check/status/", views.credential_check_status, name="credential_check_status"),
    path("<int:pk>/microsoft/sign-in/", views.microsoft_sign_in, name="credential_microsoft_sign_in"),
    path("microsoft/callback/", views.microsoft_callback, name="credential_microsoft_callback"),
]
