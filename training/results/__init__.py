"""The results: the typed result record and its stop reasons, the Postgres store and its
migrations, and the rules that decide whether a sweep run succeeded."""
