"""Who may see and do what."""
import pytest
import sqlalchemy as sa

from queue_app.models import WorkItem
from queue_app.services import access
from queue_app.services.errors import NotFound, PermissionDenied


def test_visibility_by_team_and_role(session, make_team, make_user, make_item):
    a, b = make_team(name="A"), make_team(name="B")
    item_a, item_b = make_item(team=a), make_item(team=b)
    exec_a = make_user(teams=[a])
    sup_b = make_user(teams=[b], role="supervisor")
    admin = make_user(role="admin")
    nobody = make_user()
    visible = lambda u: set(session.scalars(sa.select(WorkItem.ref).where(access.visible_items(u))))  # noqa: E731
    assert visible(exec_a) == {item_a.ref}
    assert visible(sup_b) == {item_b.ref}
    assert visible(admin) == {item_a.ref, item_b.ref}
    assert visible(nobody) == set()
    with pytest.raises(NotFound):
        access.require_view(exec_a, item_b)


def test_work_needs_assignee_or_supervisor(make_team, make_user, make_item):
    team = make_team()
    assignee, colleague = make_user(teams=[team]), make_user(teams=[team])
    sup = make_user(teams=[team], role="supervisor")
    item = make_item(team=team, assignee=assignee, actor=sup)
    access.require_work(assignee, item)
    access.require_work(sup, item)
    with pytest.raises(PermissionDenied):
        access.require_work(colleague, item)
    other_sup = make_user(teams=[make_team()], role="supervisor")
    with pytest.raises(NotFound):
        access.require_work(other_sup, item)
