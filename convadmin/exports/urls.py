from django.urls import path

from convadmin.exports import views

urlpatterns = [
    path("start/<slug:name>/", views.export_start, name="export_start"),
    path("<int:pk>/", views.export_detail, name="export_detail"),
    path("<int:pk>/download/", views.export_download, name="export_download"),
]
