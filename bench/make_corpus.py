"""Generate a realistic email corpus for the intake benchmark (bench/intake_file.py).

    python bench/make_corpus.py OUT [--count 5000] [--format mbox|eml] [--seed 1]

OUT is an mbox file (--format mbox) or a folder of numbered .eml files (--format eml).

What is in it (fractions of --count, deterministic for a seed):
- new requests to the four mailboxes of bench/intake_file.py: plain text, text+HTML
  alternatives, HTML only, HTML with an inline (cid:) image; ~15% carry a ~50 KB
  attachment (PDF-like bytes or a PNG), a few of them the same file as an earlier mail;
- replies that thread to earlier messages by In-Reply-To/References (quoting the message
  they answer), and replies found only by the [BO-000123] tag in the subject (the refs are
  predicted: items are numbered in the order the corpus creates them, in a fresh database);
- out-of-office auto-replies (tagged), list mail, mail to an address that is none of ours,
  a colleague's or a stranger's follow-up, and exact re-sends (duplicates);
- subjects, names and bodies in several languages and charsets: UTF-8, ISO-8859-1,
  ISO-8859-15, Windows-1252, KOI8-R, Shift_JIS, ISO-2022-JP, GB2312, EUC-KR; encoded-words
  in B and Q encoding; bodies in quoted-printable, base64 or 8bit.

`generate()` returns the raw messages and the outcome counts `flask intake file` should
report for them on a fresh database (`expected`).
"""
import argparse
import base64
import mailbox
import quopri
import random
import struct
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime
from pathlib import Path

MAILBOXES = ["returns@backdesk.example.com", "docs@backdesk.example.com", "recon@backdesk.example.com",
             "help@backdesk.example.com"]
ATTACHMENT_SIZE = 50 * 1024

# (charset, display names, subject templates, body sentences), per language.
LANGUAGES = [
    ("utf-8", ["Anna Müller", "Jörg Weiß", "Zoë Dubois", "Ola Nordmann"],
     ["Rückerstattung für Bestellung {order}", "Lieferung beschädigt – bitte prüfen", "Frage zur Rechnung {inv}"],
     ["Guten Tag,", "die Lieferung zu Bestellung {order} kam beschädigt an.",
      "Bitte erstatten Sie den Betrag von {amount} €.", "Die Fotos hänge ich an.", "Mit freundlichen Grüßen"]),
    ("iso-8859-1", ["François Lefèvre", "Amélie Poulain", "José García"],
     ["Réclamation commande {order}", "Problème de facturation {inv}", "Demande de remboursement – reçu"],
     ["Bonjour,", "la commande {order} est arrivée abîmée.", "Pouvez-vous me rembourser {amount} EUR ?",
      "Merci d'avance, bien à vous."]),
    ("iso-8859-15", ["Kaisa Mäkinen", "Søren Østergaard"],
     ["Hyvitys tilaukselle {order} (€)", "Lasku {inv} väärin"],
     ["Hei,", "tilaus {order} oli rikki.", "Summa {amount} € pitäisi hyvittää.", "Kiitos!"]),
    ("windows-1252", ["Pat O'Brien", "Siobhán Kelly"],
     ["“Urgent” refund for order {order}", "Invoice {inv} – wrong amount (€{amount})"],
     ["Hi,", "I’m still waiting for the refund on {order}.", "It’s been two weeks – the amount is €{amount}.",
      "Thanks…"]),
    ("koi8-r", ["Иван Петров", "Ольга Смирнова"],
     ["Возврат по заказу {order}", "Ошибка в счёте {inv}"],
     ["Здравствуйте!", "Заказ {order} пришёл повреждённым.", "Прошу вернуть {amount} руб.", "Спасибо."]),
    ("shift_jis", ["山田 太郎", "佐藤 花子"],
     ["注文{order}の返品について", "請求書{inv}の確認"],
     ["お世話になっております。", "注文{order}の商品が破損していました。", "返金をお願いいたします。", "よろしくお願いします。"]),
    ("iso-2022-jp", ["鈴木 一郎"],
     ["至急：注文{order}の件", "書類の確認をお願いします"],
     ["いつもお世話になっております。", "書類を添付しましたのでご確認ください。", "以上、よろしくお願いいたします。"]),
    ("gb2312", ["李明", "王芳"],
     ["订单{order}退款申请", "发票{inv}金额错误"],
     ["您好，", "订单{order}的商品有损坏。", "请退还{amount}元。", "谢谢！"]),
    ("euc-kr", ["김민수"],
     ["주문 {order} 환불 요청", "청구서 {inv} 오류"],
     ["안녕하세요.", "주문 {order} 상품이 파손되었습니다.", "환불 부탁드립니다.", "감사합니다."]),
    ("us-ascii", ["John Smith", "Mary Jones", "Ahmed Khan", "Priya Patel", "Chen Wei"],
     ["Refund for order {order}", "Damaged item on order {order}", "Please verify my passport",
      "Balance mismatch on account ACC-{acct}", "Question about invoice {inv}", "Update my address",
      "URGENT: payment reversed twice", "Return label not received for {order}"],
     ["Hello,", "I ordered {order} two weeks ago and it arrived damaged.",
      "Could you please refund the {amount} EUR I paid?", "I have attached the invoice for reference.",
      "My account number is ACC-{acct}.", "Please let me know if you need anything else.", "Best regards,"]),
]
DOMAINS = ["example.com", "example.org", "example.net", "kunde.example.de", "client.example.fr", "example.jp",
           "example.cn", "example.ru", "example.kr", "example.ie"]


def _encoded_words(text, charset, rng):
    """The header text as RFC 2047 encoded-words in `charset` (B or Q), or as is if ASCII."""
    if text.isascii():
        return text
    encoding = "utf-8" if charset == "us-ascii" else charset
    try:
        text.encode(encoding)
    except UnicodeEncodeError:  # "Réf: " before a Japanese subject: mailers fall back to UTF-8
        encoding = "utf-8"
    header = Header(text, encoding, maxlinelen=76)
    value = header.encode(linesep="\r\n")
    if rng.random() < 0.3 and encoding in ("utf-8", "iso-8859-1", "iso-8859-15", "windows-1252"):
        # Q encoding, as some mailers write it.
        data = text.encode(encoding)
        q = "".join(chr(b) if (48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122) else
                    ("_" if b == 32 else f"={b:02X}") for b in data)
        value = f"=?{encoding}?q?{q}?="
    return value


def _address(name, address, charset, rng):
    if not name:
        return address
    if name.isascii():
        return f'"{name}" <{address}>' if "'" in name or "," in name else f"{name} <{address}>"
    return f"{_encoded_words(name, charset, rng)} <{address}>"


def _body_part(text, charset, subtype, rng):
    """(headers, body) of a text part encoded in `charset` with a fitting transfer encoding."""
    encoding = "utf-8" if charset == "us-ascii" and not text.isascii() else charset
    data = text.encode(encoding)  # \n line ends; CRLF on the wire
    if data.isascii():  # also ISO-2022-JP, a 7-bit encoding
        cte, payload = "7bit", data.replace(b"\n", b"\r\n")
    elif encoding in ("shift_jis", "gb2312", "euc-kr") or rng.random() < 0.3:
        cte, payload = "base64", base64.encodebytes(data.replace(b"\n", b"\r\n")).replace(b"\n", b"\r\n")
    elif rng.random() < 0.2:
        cte, payload = "8bit", data.replace(b"\n", b"\r\n")
    else:
        cte, payload = "quoted-printable", quopri.encodestring(data).replace(b"\n", b"\r\n")
    head = f"Content-Type: text/{subtype}; charset=\"{encoding}\"\r\nContent-Transfer-Encoding: {cte}\r\n"
    return head.encode("ascii"), payload


def _png(rng, size):
    """A real PNG header and IHDR, then an IDAT of random bytes: sniffed as image/png."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 640, 480, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", rng.randbytes(size)) + chunk(b"IEND", b""))


def _pdf(rng, size):
    stream = rng.randbytes(size)
    return (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Length " + str(size).encode() + b" >>\nstream\n" + stream
            + b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")


def _attachment(filename, ctype, data, *, inline_cid=None):
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    disposition = "inline" if inline_cid else "attachment"
    head = f'Content-Type: {ctype}; name="{filename}"\r\nContent-Transfer-Encoding: base64\r\n'
    if inline_cid:
        head += f"Content-ID: <{inline_cid}>\r\n"
    head += f'Content-Disposition: {disposition}; filename="{filename}"\r\n'
    return head.encode("ascii"), b64


def _multipart(subtype, parts, rng, extra=""):
    boundary = f"----=_Part_{rng.getrandbits(48):012x}"
    head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"{extra}\r\n'
    body = b"This is a multi-part message in MIME format.\r\n"
    for part_head, part_body in parts:
        body += f"\r\n--{boundary}\r\n".encode() + part_head + b"\r\n" + part_body.rstrip(b"\r\n") + b"\r\n"
    body += f"\r\n--{boundary}--\r\n".encode()
    return head.encode("ascii"), body


def _html(paragraphs, cid=None):
    inner = "".join(f"<p>{p}</p>" for p in paragraphs)
    image = f'<p><img src="cid:{cid}" alt="photo" width="320"></p>' if cid else ""
    return (f'<html><head><style>p{{font-family:Arial}}</style></head><body><div class="mail">{inner}{image}'
            f'<p style="color:#888">Sent from my phone</p><img src="https://track.example.net/o.gif?id=1" '
            f'width="1" height="1"></div></body></html>')


class _Thread:
    def __init__(self, ref, requester, name, charset, subject, mailbox_address, message_ids, body, cc):
        self.ref, self.requester, self.name, self.charset = ref, requester, name, charset
        self.subject, self.mailbox, self.message_ids = subject, mailbox_address, message_ids
        self.body, self.cc = body, cc


class Generator:
    def __init__(self, seed=1):
        self.rng = random.Random(seed)
        self.items = 0  # items the corpus creates so far: the next new item is BO-<items + 1>
        self.threads = []
        self.sent = []  # raw bytes already generated (for exact re-sends)
        self.shared_files = []  # attachments that later mails attach again
        self.expected = Counter()
        self.clock = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
        self.customers = self._customers(400)

    def _customers(self, n):
        people = []
        for i in range(n):
            charset, names, *_ = self.rng.choice(LANGUAGES)
            name = self.rng.choice(names)
            local = f"customer{i}"
            people.append((name, f"{local}@{self.rng.choice(DOMAINS)}", charset))
        return people

    def _message_id(self, sender):
        return f"<{self.rng.getrandbits(64):016x}.{len(self.sent)}@{sender.split('@')[1]}>"

    def _fill(self, template):
        r = self.rng
        return template.format(order=f"ORD-{r.randint(100000, 999999)}", inv=f"INV-{r.randint(1000, 9999)}",
                               amount=f"{r.randint(5, 900)},{r.randint(0, 99):02d}", acct=r.randint(10000, 99999))

    def _headers(self, *, sender, to, subject, message_id, charset, cc=None, extra=()):
        self.clock += timedelta(seconds=self.rng.randint(5, 120))
        lines = [
            f"Return-Path: <{sender[1]}>",
            (f"Received: from mail.{sender[1].split('@')[1]} (mail [192.0.2.{self.rng.randint(1, 254)}]) by "
             f"mx.backdesk.example.com with ESMTPS id {self.rng.getrandbits(40):010x}; "
             f"{format_datetime(self.clock)}"),
            f"From: {_address(sender[0], sender[1], charset, self.rng)}",
            f"To: {to}",
        ]
        if cc:
            lines.append(f"Cc: {cc}")
        lines += [f"Subject: {_encoded_words(subject, charset, self.rng)}", f"Date: {format_datetime(self.clock)}",
                  f"Message-ID: {message_id}", "MIME-Version: 1.0", *extra]
        return "\r\n".join(lines).encode("ascii") + b"\r\n"

    def _content(self, paragraphs, charset, *, html="maybe", attachment=None, inline_image=False):
        """(Content headers, body) of the message: text, text+HTML, HTML only, with files."""
        r = self.rng
        text = "\n\n".join(paragraphs) + "\n"
        style = r.random() if html == "maybe" else (0.0 if html is False else 0.99)
        cid = f"img{r.getrandbits(32):08x}@mail.example.com" if inline_image else None
        if cid:
            related = _multipart("related", [_body_part(_html(paragraphs, cid), charset, "html", r),
                                             _attachment("photo.png", "image/png", _png(r, 3000), inline_cid=cid)],
                                 r, '; type="text/html"')
            body = _multipart("alternative", [_body_part(text, charset, "plain", r), related], r)
        elif style < 0.6:
            body = _body_part(text, charset, "plain", r)
        elif style < 0.9:
            body = _multipart("alternative", [_body_part(text, charset, "plain", r),
                                              _body_part(_html(paragraphs), charset, "html", r)], r)
        else:
            body = _body_part(_html(paragraphs), charset, "html", r)
        if attachment is not None:
            body = _multipart("mixed", [body, _attachment(*attachment)], r)
        return body

    def _file(self):
        r = self.rng
        if self.shared_files and r.random() < 0.2:
            return r.choice(self.shared_files)
        size = ATTACHMENT_SIZE + r.randint(-4096, 4096)
        if r.random() < 0.6:
            found = (f"invoice-{r.randint(1000, 9999)}.pdf", "application/pdf", _pdf(r, size))
        else:
            found = (f"IMG_{r.randint(1000, 9999)}.png", "image/png", _png(r, size))
        if r.random() < 0.3:
            self.shared_files.append(found)
        return found

    def _emit(self, raw, outcome):
        self.sent.append(raw)
        self.expected[outcome] += 1
        return raw

    # -- kinds of mail ---------------------------------------------------------------------

    def new_request(self, *, auto=False, bulk=False, to=None):
        r = self.rng
        name, address, charset = r.choice(self.customers)
        lang = next(lang for lang in LANGUAGES if lang[0] == charset)
        subject = self._fill(r.choice(lang[2]))
        paragraphs = [self._fill(s) for s in lang[3]]
        r.shuffle(paragraphs[1:-1])
        mailbox_address = to or r.choice(MAILBOXES)
        message_id = self._message_id(address)
        cc = None
        if r.random() < 0.1:
            cc = f"colleague{r.randint(1, 50)}@{address.split('@')[1]}"
        extra = []
        if bulk:
            extra = ["Precedence: bulk", f"List-Id: Offers <offers.{address.split('@')[1]}>",
                     f"List-Unsubscribe: <mailto:unsubscribe@{address.split('@')[1]}>"]
        attachment = self._file() if r.random() < 0.15 else None
        head = self._headers(sender=(name, address), to=mailbox_address, subject=subject, message_id=message_id,
                             charset=charset, cc=cc, extra=extra)
        content_head, body = self._content(paragraphs, charset, attachment=attachment,
                                           inline_image=r.random() < 0.04)
        raw = head + content_head + b"\r\n" + body
        if to is not None and to not in MAILBOXES:
            return self._emit(raw, "quarantined")
        self.items += 1
        self.threads.append(_Thread(f"BO-{self.items:06d}", address, name, charset, subject, mailbox_address,
                                    [message_id], paragraphs, cc))
        return self._emit(raw, "created")

    def reply(self, *, by_tag=False, sender=None):
        r = self.rng
        thread = r.choice(self.threads[-300:])  # replies come to recent threads
        lang = next(lang for lang in LANGUAGES if lang[0] == thread.charset)
        name, address = sender or (thread.name, thread.requester)
        if sender is None and thread.cc and r.random() < 0.2:
            name, address = "", thread.cc  # a colleague who was copied: a participant
        message_id = self._message_id(address)
        extra = []
        if by_tag:
            subject = f"Re: [{thread.ref}] {thread.subject}"
        else:
            parent = r.choice(thread.message_ids)
            subject = f"{r.choice(['Re', 'RE', 'AW', 'Réf', 'Antw'])}: {thread.subject}"
            references = " ".join(thread.message_ids[-5:])
            extra = [f"In-Reply-To: {parent}", f"References: {references}"]
        paragraphs = [self._fill(s) for s in r.sample(lang[3], k=min(2, len(lang[3])))]
        paragraphs.append("> " + "\n> ".join(thread.body))
        attachment = self._file() if r.random() < 0.15 else None
        head = self._headers(sender=(name, address), to=thread.mailbox, subject=subject, message_id=message_id,
                             charset=thread.charset, extra=extra)
        content_head, body = self._content(paragraphs, thread.charset, html=r.random() < 0.3,
                                           attachment=attachment)
        thread.message_ids.append(message_id)
        return self._emit(head + content_head + b"\r\n" + body, "followup")

    def auto_reply(self):
        r = self.rng
        thread = r.choice(self.threads[-300:])
        message_id = self._message_id(thread.requester)
        head = self._headers(sender=(thread.name, thread.requester), to="backdesk@backdesk.example.com",
                             subject=f"Automatic reply: [{thread.ref}] {thread.subject}", message_id=message_id,
                             charset=thread.charset, extra=["Auto-Submitted: auto-replied",
                                                            "X-Auto-Response-Suppress: All"])
        content_head, body = _body_part("I am out of the office until Monday and will read your message then.\n",
                                        "us-ascii", "plain", r)
        thread.message_ids.append(message_id)
        return self._emit(head + content_head + b"\r\n" + body, "followup")

    def resend(self):
        raw = self.rng.choice(self.sent[-500:])
        self.sent.append(raw)
        self.expected["duplicate"] += 1
        return raw

    def message(self):
        roll = self.rng.random()
        if not self.threads or roll < 0.55:
            return self.new_request()
        if roll < 0.72:
            return self.reply()
        if roll < 0.82:
            return self.reply(by_tag=True)
        if roll < 0.84:
            return self.reply(sender=("Unknown Person", f"stranger{self.rng.randint(1, 99)}@elsewhere.example"))
        if roll < 0.87:
            return self.auto_reply()
        if roll < 0.90:
            return self.new_request(bulk=True)
        if roll < 0.92:
            return self.new_request(to=f"info@partner{self.rng.randint(1, 9)}.example.com")
        if roll < 0.95:
            return self.resend()
        return self.new_request()


def generate(count=5000, seed=1):
    """(list of raw messages, Counter of the outcomes `intake file` should report on a fresh database)."""
    generator = Generator(seed)
    messages = [generator.message() for _ in range(count)]
    return messages, generator.expected


def write_mbox(path, messages):
    path = Path(path)
    if path.exists():
        path.unlink()
    box = mailbox.mbox(str(path))
    box.lock()
    try:
        for raw in messages:
            box.add(raw)
        box.flush()
    finally:
        box.unlock()
        box.close()
    return path


def write_eml_folder(path, messages):
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, raw in enumerate(messages, 1):
        target = path / f"{index:06d}.eml"
        target.write_bytes(raw)
        paths.append(target)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="mbox file or folder to write")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--format", choices=["mbox", "eml"], default="mbox")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    messages, expected = generate(args.count, args.seed)
    if args.format == "mbox":
        write_mbox(args.out, messages)
    else:
        write_eml_folder(args.out, messages)
    size = sum(len(m) for m in messages)
    print(f"wrote {len(messages)} messages ({size / 1e6:.1f} MB) to {args.out}; expected: "
          + ", ".join(f"{expected[k]} {k}" for k in ("created", "followup", "duplicate", "quarantined")))


if __name__ == "__main__":
    main()
