"""The checks each work type runs, in the order they are shown.

One module per kind of work (fields, documents, returns, discrepancies, escalations);
importing them registers their checks in base.REGISTRY.
"""
from queue_app.services.checks.rules import (  # noqa: F401
    discrepancies,
    documents,
    escalations,
    fields,
    returns,
)
from queue_app.services.checks.rules.base import (
    REGISTRY,
    CheckContext,
    CheckDefinition,
    CheckOutcome,
    TransientCheckError,
)

CHECKS = REGISTRY
CHECKS_BY_TYPE = {
    "return": ["required_fields", "order_number_format", "return_window", "return_approval", "duplicate_return"],
    "document_verification": ["required_fields", "document_attached", "document_file_type", "document_pdf",
                              "document_image", "document_size", "document_expiry", "document_number",
                              "duplicate_document"],
    "discrepancy_fix": ["required_fields", "discrepancy_tolerance", "discrepancy_approval"],
    "escalation": ["required_fields", "related_item", "related_item_sla"],
    "general": ["required_fields"],
}

__all__ = ["CHECKS", "CHECKS_BY_TYPE", "CheckContext", "CheckDefinition", "CheckOutcome", "TransientCheckError"]
