"""The bench's second baseline: the Django admin changelist with three sensible settings, at /tuned-admin/.

1. ``show_full_result_count = False``: a filtered page does not count the whole table a second time.
2. A paginator that, when nothing filters the list, takes the planner's row estimate (``pg_class.reltuples``)
   instead of ``COUNT(*)``.
3. ``search_fields`` on ``search_text`` (lower-cased name, external id and participants) with ``contains`` on a
   lower-cased term: a LIKE the pg_trgm GIN index answers (``icontains`` wraps the column in UPPER()).
"""

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

from convadmin.conversations.admin import ConversationAdmin
from convadmin.conversations.models import Conversation


class EstimatePaginator(Paginator):
    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if qs.query.where or connections[qs.db].vendor != "postgresql":
            return super().count
        with connections[qs.db].cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [qs.model._meta.db_table]
            )
            estimate = cursor.fetchone()[0]
        return estimate if estimate > 0 else super().count


class TunedConversationAdmin(ConversationAdmin):
    show_full_result_count = False
    paginator = EstimatePaginator
    search_fields = ["search_text__contains"]

    def get_search_results(self, request, queryset, search_term):
        return super().get_search_results(request, queryset, search_term.lower())


site = admin.AdminSite(name="tuned_admin")
site.register(Conversation, TunedConversationAdmin)
