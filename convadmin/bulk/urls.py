from django.urls import path

from convadmin.bulk import views

urlpatterns = [
    path("", views.bulk_index, name="bulk"),
    path("template/<str:provider>.<str:fmt>", views.bulk_template, name="bulk_template"),
    path("<int:pk>/", views.bulk_batch, name="bulk_batch"),
    path("<int:pk>/report.csv", views.bulk_export, name="bulk_export"),
    path("<int:pk>/<str:action>/", views.bulk_action, name="bulk_action"),
]
