from django.urls import path

from convadmin.conversations import record_views, views

# Create side: views.py. Inspect side (list, detail, actions, export): record_views.py.
urlpatterns = [
    path("new/validate/", views.validate_field, name="conversation_validate_field"),
    path("new/validate-json/", views.validate_json, name="conversation_validate_json"),
    path("new/rows/add/", views.add_row, name="conversation_add_row"),
    path("new/rows/remove/", views.remove_row, name="conversation_remove_row"),
    path("new/", views.new_conversation, name="conversation_new"),
    path("new/status/<int:pk>/", views.create_status, name="conversation_create_status"),
    path("", record_views.conversation_list, name="conversations"),
    path("<int:pk>/", record_views.conversation_detail, name="conversation_detail"),
    path("export/", record_views.conversation_export, name="conversation_export"),
    path("<int:pk>/refresh/", record_views.conversation_refresh, name="conversation_refresh"),
    path("<int:pk>/retry/", record_views.conversation_retry, name="conversation_retry"),
    path("<int:pk>/check/", record_views.conversation_check, name="conversation_check"),
    path(
        "<int:pk>/exchanges/<int:exchange_id>/<str:part>.txt",
        record_views.exchange_body,
        name="exchange_body",
    ),
]
