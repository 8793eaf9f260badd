"""An application of the Python `eventsourcing` library on its KurrentDB persistence
module (`eventsourcing-kurrentdb`), both unmodified, against eventfold (URI: first
argument): aggregates saved and loaded, a conflict between two writers refused,
snapshots, the application's notification log, and a subscription to it that
turns live. Prints a JSON summary last."""
import os
import sys
from dataclasses import dataclass
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from harness import finish

os.environ["PERSISTENCE_MODULE"] = "eventsourcing_kurrentdb"
os.environ["KURRENTDB_URI"] = sys.argv[1]

from eventsourcing.application import Application  # noqa: E402
from eventsourcing.domain import Aggregate, event  # noqa: E402
from eventsourcing.persistence import IntegrityError  # noqa: E402


class Book(Aggregate):
    # KurrentDB streams start at revision 0, so the package asks for aggregates that
    # start at version 0.
    INITIAL_VERSION = 0

    @staticmethod
    def create_id(isbn: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/books/{isbn}")

    @dataclass(frozen=True)
    class Catalogued(Aggregate.Created):
        isbn: str
        title: str

    @dataclass(frozen=True)
    class Lent(Aggregate.Event):
        reader: str

    @dataclass(frozen=True)
    class Returned(Aggregate.Event):
        pass

    @event(Catalogued)
    def __init__(self, isbn: str, title: str) -> None:
        self.isbn = isbn
        self.title = title
        self.loans: list[str] = []
        self.out = False

    @event(Lent)
    def lend(self, reader: str) -> None:
        self.loans.append(reader)
        self.out = True

    @event(Returned)
    def give_back(self) -> None:
        self.out = False


class Library(Application[UUID]):
    is_snapshotting_enabled = True

    def catalogue(self, isbn: str, title: str) -> UUID:
        book = Book(isbn, title)
        self.save(book)
        return book.id

    def lend(self, isbn: str, reader: str) -> None:
        book = self.repository.get(Book.create_id(isbn))
        book.lend(reader)
        self.save(book)

    def give_back(self, isbn: str) -> None:
        book = self.repository.get(Book.create_id(isbn))
        book.give_back()
        self.save(book)

    def loans(self, isbn: str) -> list[str]:
        return self.repository.get(Book.create_id(isbn)).loans


isbn = str(uuid4())
library = Library()
book_id = library.catalogue(isbn, "A Pattern Language")
library.lend(isbn, "ann")
library.give_back(isbn)
library.lend(isbn, "bob")
assert library.loans(isbn) == ["ann", "bob"]

# Another instance of the application reads the same store.
other = Library()
assert other.loans(isbn) == ["ann", "bob"]
assert other.repository.get(book_id).out is True

# Two writers from the same version: the second is refused (the stream's revision
# moved), and nothing of it is stored.
first = other.repository.get(book_id)
second = library.repository.get(book_id)
first.give_back()
other.save(first)
second.give_back()
try:
    library.save(second)
except IntegrityError:
    pass
else:
    raise AssertionError("a save from a stale version was taken")
assert library.repository.get(book_id).version == 4

# Snapshots: one taken, and the aggregate loaded from it with the events after.
library.take_snapshot(book_id)
library.lend(isbn, "cy")
assert len(list(library.snapshots.get(book_id))) == 1
assert library.repository.get(book_id).loans == ["ann", "bob", "cy"]

# The notification log: the application's events in order, by commit position.
notifications = list(library.recorder.select_notifications(start=1, limit=1000))
ours = [n for n in notifications if str(n.originator_id) == str(book_id)]
section = library.notification_log.select(start=1, limit=10)
assert [n.id for n in section] == [n.id for n in notifications[:10]]
assert [n.originator_version for n in ours] == [0, 1, 2, 3, 4, 5], ours
assert library.recorder.max_notification_id() == notifications[-1].id

# A subscription to the application's events from the last one: the next one, live.
subscription = library.recorder.subscribe(gt=library.recorder.max_notification_id())
library.give_back(isbn)
live = next(subscription)
subscription.stop()
assert str(live.originator_id) == str(book_id) and live.originator_version == 6, live

finish(
    {"notifications": len(ours), "last": live.id},
    library.factory.client,
    other.factory.client,
)
