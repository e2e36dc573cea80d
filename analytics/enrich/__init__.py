"""Pure functions that turn what a request says into what analytics reports: device, bot, country, source, visitor."""
