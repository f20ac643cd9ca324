"""An in-process LRU cache in front of any vocabulary store.

Unknown words are cached too (as misses that stay misses), so a comment full
of typos does not send the same words to the store on every request. One
`lookup` asks the wrapped store once, for the words the cache does not hold.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from toxic_service.vocab.base import VocabularyInfo, VocabularyStore

_UNKNOWN = -1  # cached "not in the vocabulary" (real indexes are >= 0)


class CachedVocabularyStore:
    """LRU over `store`, bounded by `max_entries`; counts hits and misses per word.

    `hits`/`misses` are running totals for this process. `on_lookup(hits, misses)`,
    if given, is called after each lookup with that lookup's counts, which is
    how a Prometheus Counter in gunicorn's multiprocess mode gets incremented.
    """

    def __init__(
        self,
        store: VocabularyStore,
        max_entries: int,
        on_lookup: Callable[[int, int], None] | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1 (do not wrap the store to disable caching)")
        self.store = store
        self.max_entries = max_entries
        self.on_lookup = on_lookup
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, words: Iterable[str]) -> Mapping[str, int]:
        distinct = dict.fromkeys(words)
        found: dict[str, int] = {}
        missing: list[str] = []
        with self._lock:
            for word in distinct:
                index = self._entries.get(word)
                if index is None:
                    missing.append(word)
                    continue
                self._entries.move_to_end(word)
                if index != _UNKNOWN:
                    found[word] = index
            hits = len(distinct) - len(missing)
            self.hits += hits
            self.misses += len(missing)
        if missing:
            # Outside the lock: a slow store must not serialise the other threads' cache hits.
            fetched = self.store.lookup(missing)
            found.update(fetched)
            # One bulk update (a cold batch misses hundreds of words): new words go to the recent end.
            # A word another thread added meanwhile keeps its place, a few entries from the end.
            fresh = {word: fetched.get(word, _UNKNOWN) for word in missing}
            with self._lock:
                self._entries.update(fresh)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        if self.on_lookup is not None:
            self.on_lookup(hits, len(missing))
        return found

    def info(self) -> VocabularyInfo:
        return self.store.info()

    def ping(self) -> None:
        self.store.ping()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def close(self) -> None:
        self.clear()
        self.store.close()
