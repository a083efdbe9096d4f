-- 018: held-out rows whose every text (both functions of a pair) is in the training rows the run
-- kept, if not as this pair: near-copies, counted apart from exact duplicates and from rows that
-- share one text with a training row. NULL on rows from before.

ALTER TABLE experiments
    ADD COLUMN validation_rows_all_texts_in_train integer CHECK (validation_rows_all_texts_in_train >= 0),
    ADD COLUMN test_rows_all_texts_in_train       integer CHECK (test_rows_all_texts_in_train >= 0);
