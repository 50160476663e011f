"""A throwaway Dovecot IMAP server for the intake tests.

Debian's dovecot-imapd (`apt-get install -y dovecot-imapd`; `make test` installs it) runs
from a config of our own in a temporary directory: IMAP only, plain text login without
TLS on 127.0.0.1 and a free port, "/" between folder levels, a static passdb (every user
name exists, all with the same password, so each test simply picks a new name), Maildirs,
logs and sockets all in that directory.
As root the server's helper processes run as the package's `dovecot`/`dovenull` users and
mail belongs to `nobody`; as another user everything runs as that user.
"""
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

_users = itertools.count(1)


def dovecot_binary():
    """The dovecot binary, or None when the package is not installed."""
    return shutil.which("dovecot") or next((p for p in ("/usr/sbin/dovecot",) if os.access(p, os.X_OK)), None)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot:
    """A running Dovecot. `add_user()`, `append()`, `connect()`, `stop()`."""

    def __init__(self, binary=None):
        self.binary = binary or dovecot_binary()
        if self.binary is None:
            raise RuntimeError("dovecot is not installed (apt-get install -y dovecot-imapd)")
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dovecot-"))  # short path: sockets live in it
        self.dir.chmod(0o755)
        self.password = "imap-secret-1"
        self.proc = None
        if os.geteuid() == 0:
            mail_user = pwd.getpwnam("nobody")
            self.internal_user, self.login_user = "dovecot", "dovenull"
        else:
            mail_user = pwd.getpwuid(os.geteuid())
            self.internal_user = self.login_user = mail_user.pw_name
        self.uid, self.gid = mail_user.pw_uid, mail_user.pw_gid
        (self.dir / "mail").mkdir()
        os.chown(self.dir / "mail", self.uid, self.gid)
        self.config = self.dir / "dovecot.conf"
        self.config.write_text(self._config())

    def _config(self):
        d = self.dir
        return f"""
protocols = imap
listen = {self.host}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
# no growing delay after the wrong-password test (Dovecot's per-IP auth penalty)
default_internal_user = {self.internal_user}
default_login_user = {self.login_user}
first_valid_uid = {min(self.uid, 500)}
first_valid_gid = 0
mail_location = maildir:{d}/mail/%u
mail_privileged_group =
# "/" between folder levels, as most servers show it ("Erledigt/Geprüft")
namespace inbox {{
  inbox = yes
  separator = /
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
passdb {{
  driver = static
  args = password={self.password}
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

    def start(self, timeout=20):
        self.proc = subprocess.Popen([self.binary, "-F", "-c", str(self.config)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                output = self.proc.stdout.read().decode("utf-8", "replace")
                raise RuntimeError(f"dovecot exited with {self.proc.returncode}: {output}\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not answer on {self.host}:{self.port}\n{self.log()}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def add_user(self):
        """A new account with an empty INBOX; returns (user, password)."""
        return f"user{next(_users)}", self.password

    def connect(self, user, password):
        """A logged-in IMAPClient (which encodes folder names and parses responses)."""
        client = IMAPClient(self.host, self.port, ssl=False, timeout=10)
        try:
            client.login(user, password)
        except BaseException:
            client.shutdown()
            raise
        return client

    def append(self, user, password, raw, folder="INBOX", flags=()):
        self.append_many(user, password, [raw], folder=folder, flags=flags)

    def append_many(self, user, password, raws, folder="INBOX", flags=()):
        """Deliver many messages over one connection (MULTIAPPEND when there is more than one)."""
        client = self.connect(user, password)
        try:
            if len(raws) == 1:
                client.append(folder, raws[0], flags=flags)
            else:
                client.multiappend(folder, [{"msg": raw, "flags": flags} for raw in raws])
        finally:
            client.logout()

    def messages(self, user, password, folder="INBOX"):
        """[(uid, flags, raw)] of a folder, read without changing anything; [] if it does not exist."""
        client = self.connect(user, password)
        try:
            try:
                client.select_folder(folder, readonly=True)
            except IMAPClientError:
                return []
            uids = client.search("ALL")
            if not uids:
                return []
            fetched = client.fetch(uids, ["FLAGS", "BODY.PEEK[]"])
            return [(uid, [f.decode() for f in fetched[uid][b"FLAGS"]], fetched[uid][b"BODY[]"])
                    for uid in sorted(fetched)]
        finally:
            client.logout()
