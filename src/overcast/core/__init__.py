"""Process-wide plumbing every layer may use: settings, logging, context ids, clocks."""
