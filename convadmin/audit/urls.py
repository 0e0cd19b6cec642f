from django.urls import path

from convadmin.audit import views

urlpatterns = [
    path("", views.audit_log, name="audit"),
]
