from django.urls import path

from convadmin.audit import views

urlpatterns = [
    path("", views.audit_log, name="audit"),
    path("export/", views.audit_export, name="audit_export"),
]
