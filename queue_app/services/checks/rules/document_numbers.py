"""Document numbers: the format configured for each document type (see
services.checks.settings.DOCUMENT_NUMBER_FORMATS), with the IBAN checksum for bank documents."""
import re

from queue_app.services.checks.rules import iban
from queue_app.services.checks.settings import IBAN


def normalise(number):
    return re.sub(r"\s", "", number or "").upper()


def problem(number, number_format):
    """None when `number` matches `number_format` (a regular expression, "iban", or None for any)."""
    if number_format is None:
        return None
    if number_format == IBAN:
        return iban.problem(number)
    if not re.fullmatch(number_format, normalise(number)):
        return f"does not match the format {number_format}"
    return None
