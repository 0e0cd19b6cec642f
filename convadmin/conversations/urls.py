from django.urls import path

from convadmin.conversations import inspect, views

# Create side: views.py. Inspect side (list, detail, actions, export): inspect.py.
urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
    path("new/", views.new_conversation, name="conversation_new"),
    path("", inspect.conversation_list, name="conversations"),
    path("<int:pk>/", inspect.conversation_detail, name="conversation_detail"),
]
