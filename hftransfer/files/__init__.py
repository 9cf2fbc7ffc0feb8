"""Files written safely: whole by a rename (``atomic``), and the record of what hftransfer wrote into a folder it
shares with the user (``written``). The lowest layer: it imports nothing else of hftransfer."""
