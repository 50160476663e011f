"""Domain logic. Functions take plain arguments, a session, an actor and `now`; they flush, the caller commits."""
