from django.urls import path

from convadmin.drafts import views

urlpatterns = [
    path("", views.template_list, name="templates"),
    path("<int:pk>/rename/", views.template_rename, name="template_rename"),
    path("<int:pk>/delete/", views.template_delete, name="template_delete"),
]
