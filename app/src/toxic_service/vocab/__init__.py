"""Vocabulary stores: word -> integer index, behind one small interface."""

from toxic_service.vocab.base import VocabularyInfo, VocabularyStore

__all__ = ["VocabularyInfo", "VocabularyStore"]
