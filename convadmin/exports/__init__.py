"""Big exports as jobs: an Export record, the job that writes its file into storage, its status page and the
audited download. What a list exports is registered in convadmin.lists.export by the list's own app."""
