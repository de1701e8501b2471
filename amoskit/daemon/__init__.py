"""Docker access: connecting to the engine, a throwaway empty daemon, container runs with their logs and peak memory."""
