"""The app's URLs plus the Django admin, which `make bench` uses as its baselines (the app itself has none):
the default admin at /admin/ and a tuned one (bench/tuned_admin.py) at /tuned-admin/."""

from django.contrib import admin
from django.urls import path

from bench.tuned_admin import site as tuned_site
from convadmin.urls import urlpatterns as app_urlpatterns

urlpatterns = [*app_urlpatterns, path("admin/", admin.site.urls), path("tuned-admin/", tuned_site.urls)]
