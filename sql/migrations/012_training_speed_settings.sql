-- 012: how an experiment trained, where the plan leaves it to the run. activation_checkpointing:
-- whether it was on as the run ended (with gradient_checkpointing = "auto" it starts off and a CUDA
-- out-of-memory turns it on before the batch is halved). compiled: trained through torch.compile
-- (plan setting compile = true / "auto" on CUDA); compile_seconds: the first step's excess over
-- the median step, i.e. what compiling cost this run (small when the inductor cache was warm).

ALTER TABLE experiments
    ADD COLUMN activation_checkpointing boolean,
    ADD COLUMN compiled                 boolean,
    ADD COLUMN compile_seconds          double precision CHECK (compile_seconds >= 0);
