"""The app's URLs plus the Django admin, which `make bench` uses as its baseline (the app itself has none)."""

from django.contrib import admin
from django.urls import path

from convadmin.urls import urlpatterns as app_urlpatterns

urlpatterns = [*app_urlpatterns, path("admin/", admin.site.urls)]
