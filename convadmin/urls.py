from django.contrib.auth.views import LogoutView
from django.urls import include, path

from convadmin.accounts import views as accounts
from convadmin.dashboard.views import dashboard

urlpatterns = [
    path("", accounts.home, name="home"),
    path("setup/", accounts.setup, name="setup"),
    path("accounts/login/", accounts.login_view, name="login"),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path("accounts/password/", accounts.password_change, name="password_change"),
    path("users/", accounts.users, name="users"),
    path("users/<int:pk>/", accounts.user_change, name="user_change"),
    path("credentials/", include("convadmin.credentials.urls")),
    path("conversations/templates/", include("convadmin.drafts.urls")),
    path("conversations/dashboard/", dashboard, name="dashboard"),
    path("conversations/", include("convadmin.conversations.urls")),
    path("bulk/", include("convadmin.bulk.urls")),
    path("audit/", include("convadmin.audit.urls")),
    path("exports/", include("convadmin.exports.urls")),
]
