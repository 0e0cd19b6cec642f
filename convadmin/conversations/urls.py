from django.urls import path

from convadmin.conversations import inspect, views

# Create side: views.py. Inspect side (list, detail, actions, export): inspect.py.
urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
    path("new/", views.new_conversation, name="conversation_new"),
    path("new/status/<int:pk>/", views.create_status, name="conversation_create_status"),
    path("", inspect.conversation_list, name="conversations"),
    path("<int:pk>/", inspect.conversation_detail, name="conversation_detail"),
    path("export/", inspect.conversation_export, name="conversation_export"),
    path("<int:pk>/refresh/", inspect.conversation_refresh, name="conversation_refresh"),
    path("<int:pk>/retry/", inspect.conversation_retry, name="conversation_retry"),
    path("<int:pk>/check/", inspect.conversation_check, name="conversation_check"),
    path(
        "<int:pk>/exchanges/<int:exchange_id>/<str:part>.txt",
        inspect.exchange_body,
        name="exchange_body",
    ),
]
