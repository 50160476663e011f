"""RQ job functions and the worker/scheduler entry points. Jobs call services; they hold no rules."""
