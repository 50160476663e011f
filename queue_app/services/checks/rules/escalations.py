"""Checks of an escalation: the item it escalates exists, and if that item has breached its
SLA the escalation itself becomes urgent (the one check with an effect, applied once)."""
import sqlalchemy as sa

from queue_app.models import WorkItem
from queue_app.services.checks.rules.base import CheckOutcome, check
from queue_app.services.items.events import record_event
from queue_app.services.sla import policies


def related_item_of(ctx):
    ref = (ctx.item.related_ref or "").strip().upper()
    if not ref or ref == ctx.item.ref:
        return None
    return ctx.session.scalar(sa.select(WorkItem).where(WorkItem.ref == ref))


@check("related_item", title="Related item")
def related_item(ctx):
    ref = (ctx.item.related_ref or "").strip().upper()
    if not ref:
        return CheckOutcome("failed", "No related item: give the reference of the item this escalates")
    if ref == ctx.item.ref:
        return CheckOutcome("failed", "The escalation names itself as the related item")
    related = related_item_of(ctx)
    if related is None:
        return CheckOutcome("failed", f"There is no item {ref}", {"related_ref": ref})
    return CheckOutcome("passed", f"Escalates {related.ref} ({related.status.replace('_', ' ')}, team "
                                  f"{related.team.name})", {"related_refs": [related.ref]})


def make_urgent(ctx, outcome):
    """Raise the escalation to urgent, with an event, and let the SLA policy follow the new priority."""
    item = ctx.item
    if outcome.data.get("raise_priority") != "urgent" or item.priority == "urgent" or not item.is_open:
        return
    old = item.priority
    item.priority = "urgent"
    item.updated_at = ctx.now
    record_event(ctx.session, item, "priority_raised", "worker",
                 {"from": old, "to": "urgent", "related_ref": outcome.data["related_refs"][0],
                  "reason": "the related item has breached its SLA"}, now=ctx.now)
    policies.recalculate(ctx.session, item, ctx.now, "worker", reason="priority raised: related item breached its SLA")
    ctx.session.flush()


@check("related_item_sla", mandatory=False, title="Related item's SLA", apply=make_urgent)
def related_item_sla(ctx):
    related = related_item_of(ctx)
    if related is None:
        return CheckOutcome("passed", "No related item to look at")
    state = policies.state_at(related, ctx.now)
    data = {"related_refs": [related.ref], "sla_state": state}
    if state == "breached":
        if ctx.item.priority == "urgent":
            return CheckOutcome("warning", f"{related.ref} has breached its SLA; this escalation is urgent", data)
        return CheckOutcome("warning", f"{related.ref} has breached its SLA: this escalation becomes urgent",
                            {**data, "raise_priority": "urgent"})
    return CheckOutcome("passed", f"{related.ref} has not breached its SLA ({state.replace('_', ' ')})", data)
