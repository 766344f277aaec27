//! `ApiConnectOptions` and the retry helper every plugin uses.
