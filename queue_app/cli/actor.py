"""Who the audit trail says made a change from the command line."""
import getpass


def cli_actor():
    """"cli:<operating-system user>", the actor of a change made by a `flask` command."""
    try:
        name = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container without a passwd entry)
        name = "unknown"
    return f"cli:{name}"
