-- 014: the step cap a run was given, and which bound set its planned steps. A cap only ever
-- shortens a run: steps_planned = min(max_steps, the grid's epochs), and steps_planned_by says
-- which of the two it was. Rows from before this migration have NULLs.

ALTER TABLE experiments
    ADD COLUMN max_steps        integer CHECK (max_steps >= 1),
    ADD COLUMN steps_planned_by text    CHECK (steps_planned_by IN ('epochs', 'max_steps'));
