"""What affects an address: the matched building, events near it and the zones answering for it (`/affects`)."""
