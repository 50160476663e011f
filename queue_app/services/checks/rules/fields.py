"""The check every work type has: its required fields are present and well-formed."""
from queue_app.services.checks.rules.base import CheckOutcome, check
from queue_app.services.items.work_types import problems_with_item_fields


@check("required_fields")
def required_fields(ctx):
    problems = problems_with_item_fields(ctx.item)
    if problems:
        listed = "; ".join(f"{name} {problem}" for name, problem in sorted(problems.items()))
        return CheckOutcome("failed", f"Required fields missing or malformed: {listed}", {"problems": problems})
    return CheckOutcome("passed", "All required fields are present and well-formed")
