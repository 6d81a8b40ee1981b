from collection.management.base import transition_command

Command = transition_command("resume", "resume")
