//! Waiting for the operator's stop signal: Ctrl-C (SIGINT) or SIGTERM (what systemd and
//! `kill` send), so a gateway flushes its data either way.

/// Resolves at the first SIGINT or SIGTERM.
pub async fn signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
