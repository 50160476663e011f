"""IBAN validation (ISO 13616): country code, length for the country, and the mod-97 checksum."""
import re

# Lengths of the IBANs of the countries we see most; other countries: 15 to 34 characters.
LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
}
_SHAPE = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$")


def normalise(value):
    return re.sub(r"[\s-]", "", value or "").upper()


def problem(value):
    """None for a valid IBAN, else why it is not one (for a person to read)."""
    iban = normalise(value)
    if not _SHAPE.fullmatch(iban):
        return "is not shaped like an IBAN (2 letters, 2 check digits, then 11-30 letters or digits)"
    expected = LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return f"has {len(iban)} characters; an IBAN from {iban[:2]} has {expected}"
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(c, 36)) for c in rearranged)
    if int(digits) % 97 != 1:
        return "fails the mod-97 checksum (a typing error?)"
    return None


def is_valid(value):
    return problem(value) is None
