"""Full-text search (services.items.search and GET /search) on the database under test: SQLite FTS5 or
PostgreSQL tsvector indexes, kept current by whatever path writes items and messages."""
import re
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from queue_app.db import search_index
from queue_app.models import Message
from queue_app.services.errors import Invalid
from queue_app.services.intake import filing, mailboxes
from queue_app.services.items import lifecycle
from queue_app.services.items import search as items_search
from tests.conftest import database_is


def refs(results):
    return [item.ref for item in results.items]


def find(session, user, text):
    return refs(items_search.search(session, user, text))


@pytest.fixture
def items(session, world, make_item):
    kettle = make_item(team=world.returns, subject="Kettle arrived broken", requester_email="anna@customer.example.com")
    toaster = make_item(team=world.returns, subject="Toaster refund", requester_email="bob@shop.example.org")
    passport = make_item(team=world.docs, type="document_verification", subject="Passport scan blurry",
                         requester_email="anna@customer.example.com")
    session.commit()
    return type("Items", (), dict(kettle=kettle, toaster=toaster, passport=passport))


def test_finds_by_a_subject_word_in_any_case(session, world, items):
    assert find(session, world.priya, "KETTLE") == [items.kettle.ref]
    assert find(session, world.priya, "refund") == [items.toaster.ref]


def test_all_words_must_match(session, world, items):
    assert find(session, world.priya, "kettle broken") == [items.kettle.ref]
    assert find(session, world.priya, "kettle refund") == []


def test_finds_by_requester_email_and_reference(session, world, items):
    assert find(session, world.priya, "bob@shop.example.org") == [items.toaster.ref]
    assert find(session, world.priya, items.kettle.ref) == [items.kettle.ref]
    assert find(session, world.priya, items.kettle.ref.lower()) == [items.kettle.ref]


def test_finds_by_a_word_of_a_note_and_of_a_reply(session, world, items):
    lifecycle.add_note(session, items.kettle, actor=world.priya, body="Courier confirmed the dent happened in transit")
    lifecycle.add_reply(session, items.toaster, actor=world.sup, body="We will send a replacement thermostat")
    session.commit()

    assert find(session, world.priya, "courier transit") == [items.kettle.ref]
    assert find(session, world.priya, "thermostat") == [items.toaster.ref]


def test_an_executive_never_sees_other_teams_items(session, world, items):
    # Both requesters' items carry anna@...; Priya (Returns) sees only the Returns one.
    assert find(session, world.priya, "anna@customer.example.com") == [items.kettle.ref]
    assert find(session, world.priya, "passport") == []
    assert find(session, world.lena, "passport") == [items.passport.ref]
    assert find(session, world.lena, "kettle") == []


def test_matches_in_fields_and_messages_come_newest_first_once_each(session, world, items):
    lifecycle.add_note(session, items.kettle, actor=world.priya, body="Customer also asked about a toaster")
    lifecycle.add_note(session, items.toaster, actor=world.priya, body="The toaster is a Brand X toaster")
    session.commit()

    assert find(session, world.priya, "toaster") == [items.toaster.ref, items.kettle.ref]


@pytest.mark.parametrize("junk", ['"foo* OR (', 'NEAR(a b)', "kettle AND", "^col:kettle", "'; DROP TABLE x; --",
                                  'title:"', "a -b +c", "*", "\"\"\"kettle"])
def test_syntax_characters_never_crash(session, world, items, junk):
    try:
        result = items_search.search(session, world.priya, junk)
    except Invalid as exc:
        assert "letter or digit" in exc.message
    else:
        assert isinstance(result.items, list)


@pytest.mark.parametrize("empty", ["", "   ", "(*)", '""', "--"])
def test_an_empty_or_junk_query_is_refused_with_a_message(session, world, empty):
    with pytest.raises(Invalid):
        items_search.search(session, world.priya, empty)


def test_the_fts5_query_quotes_every_word():
    assert items_search.fts5_query('"foo* OR (') == '"foo" "OR"'
    assert items_search.fts5_query("anna@customer.example.com BO-000012") == '"anna customer example com" "BO 000012"'


def test_the_index_follows_changes_and_deletes(session, world, items):
    items.toaster.subject = "Blender refund"
    session.commit()
    assert find(session, world.priya, "toaster") == []
    assert find(session, world.priya, "blender") == [items.toaster.ref]

    note = lifecycle.add_note(session, items.kettle, actor=world.priya, body="zanzibar")
    session.commit()
    assert find(session, world.priya, "zanzibar") == [items.kettle.ref]
    session.delete(note)
    session.commit()
    assert find(session, world.priya, "zanzibar") == []


def test_rows_written_by_plain_sql_are_indexed(session, world, items):
    """Bulk inserts that bypass the ORM (as intake and the generators do) are found too."""
    session.execute(sa.insert(Message.__table__), [
        {"work_item_id": items.toaster.id, "kind": "inbound", "body_text": "Rhubarb crumble recipe attached",
         "created_at": items.toaster.created_at}])
    session.commit()
    assert find(session, world.priya, "rhubarb") == [items.toaster.ref]


def test_the_email_intake_path_is_indexed(session, world, make_user):
    mailboxes.create_mailbox(session, address="returns@backdesk.example.com", type="return", team_name="Returns",
                             priority="normal")
    session.commit()

    def deliver(subject, body, **headers):
        msg = EmailMessage()
        msg["From"] = "Carla Diaz <carla@buyer.example.net>"
        msg["To"] = "returns@backdesk.example.com"
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{subject.replace(' ', '-')}@buyer.example.net>"
        for name, value in headers.items():
            msg[name.replace("_", "-")] = value
        msg.set_content(body)
        inbound = filing.receive(session, bytes(msg), source="smtp", envelope_to=["returns@backdesk.example.com"])
        outcome = filing.process(session, inbound)
        session.commit()
        return outcome

    first = deliver("Wrong colour sofa", "The sofa is mauve instead of teal.")
    follow_up = deliver("Re: Wrong colour sofa", "Also a cushion is missing, a gingham one.",
                        In_Reply_To="<Wrong-colour-sofa@buyer.example.net>")

    assert follow_up.item.id == first.item.id
    assert find(session, world.priya, "mauve teal") == [first.item.ref]
    assert find(session, world.priya, "gingham cushion") == [first.item.ref]
    assert find(session, world.priya, "carla@buyer.example.net") == [first.item.ref]


def test_results_are_paged(session, world, make_item):
    made = [make_item(team=world.returns, subject=f"Umbrella number {n}") for n in range(7)]
    session.commit()

    lifecycle.add_note(session, made[1], actor=world.priya, body="umbrella spokes bent")  # found twice: once
    session.commit()
    first = items_search.search(session, world.priya, "umbrella", size=5)
    second = items_search.search(session, world.priya, "umbrella", before=first.next_before, size=5)

    assert first.next_before == made[2].id and second.next_before is None
    assert refs(first) + refs(second) == [item.ref for item in reversed(made)]


# --- the page ---------------------------------------------------------------------------------

def test_the_search_page_lists_visible_matches(client, auth, world, items):
    auth.login("priya@example.com")
    page = client.get("/search", query_string={"q": "anna@customer.example.com"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert items.kettle.ref in html and items.passport.ref not in html


def test_a_reference_typed_in_the_box_opens_the_item(client, auth, world, items):
    auth.login("priya@example.com")
    response = client.get("/search", query_string={"q": f" {items.kettle.ref.lower()} "})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/items/{items.kettle.ref}")


def test_another_teams_reference_is_not_opened(client, auth, world, items):
    auth.login("priya@example.com")
    response = client.get("/search", query_string={"q": items.passport.ref})
    assert response.status_code == 200
    assert "Nothing found" in response.get_data(as_text=True)


@pytest.mark.parametrize("q", ["", "((", '"'])
def test_an_empty_or_junk_search_gets_a_clear_message(client, auth, world, q):
    auth.login("priya@example.com")
    response = client.get("/search", query_string={"q": q})
    assert response.status_code == 400
    assert "search" in response.get_data(as_text=True).lower()
    assert 'id="search-error"' in response.get_data(as_text=True)


def test_a_bad_page_link_gets_a_clear_message(client, auth, world, items):
    auth.login("priya@example.com")
    for before in ("x", "-5", "9" * 40):
        response = client.get("/search", query_string={"q": "kettle", "before": before})
        assert response.status_code == 400 and "page link is not valid" in response.get_data(as_text=True)


def test_the_older_matches_link_pages_through(client, auth, session, world, make_item, monkeypatch):
    made = [make_item(team=world.returns, subject=f"Lantern {n}") for n in range(3)]
    session.commit()
    monkeypatch.setattr(items_search, "PAGE_SIZE", 2)
    monkeypatch.setattr(items_search.search, "__defaults__", (None, 2, ()))
    auth.login("priya@example.com")
    html = client.get("/search", query_string={"q": "lantern"}).get_data(as_text=True)
    assert made[2].ref in html and made[1].ref in html and made[0].ref not in html
    link = re.search(r'<a href="([^"]+)">Older matches', html).group(1).replace("&amp;", "&")
    older = client.get(link).get_data(as_text=True)
    assert made[0].ref in older and made[1].ref not in older


def test_search_needs_a_login(client):
    response = client.get("/search", query_string={"q": "kettle"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_query_plan_uses_the_full_text_indexes(session, world, items):
    queries, params = items_search.search_queries(session, world.priya, "kettle")
    if database_is("postgresql"):
        # On a few rows the planner rightly prefers other plans; with only the full-text index
        # usable for the match, it must be chosen: the query's expressions are the index's.
        session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        session.execute(sa.text("SET LOCAL enable_indexscan = off"))
        match = sa.bindparam("match", type_=sa.String)
        queries = [sa.select(sa.literal_column("id")).select_from(sa.table(table)).where(
            sa.text(f"{document} @@ websearch_to_tsquery('simple', :match)").bindparams(match))
            for table, document in (("work_items", search_index.PG_ITEM_DOCUMENT), ("messages", search_index.PG_MESSAGE_DOCUMENT))]
    plan = "\n".join(line for query in queries for line in items_search.explain(session, query, params))
    session.rollback()
    if database_is("postgresql"):
        assert "ix_work_items_fts" in plan and "ix_messages_fts" in plan
    else:
        assert "work_items_fts VIRTUAL TABLE INDEX" in plan and "messages_fts VIRTUAL TABLE INDEX" in plan
