//! The `mixgate` binary: one executable for every role.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::{GatewayConfig, NetworkConfig, RegistrationMode};

/// mixgate: a Matrix homeserver gateway over a mixnet.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by commands that open a gateway.
#[derive(clap::Args, Clone)]
struct GatewayArgs {
    /// Config file (TOML); without it, embedded defaults are used.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address for the client-server API (overrides the file).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data folder (overrides the file).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Registration policy (overrides the file).
    #[arg(long, value_enum)]
    registration: Option<RegistrationMode>,
    /// Keep everything in memory only.
    #[arg(long)]
    memory_only: bool,
    /// Serve Prometheus metrics and the status page on this address (overrides
    /// `metrics_listen`; off unless set).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

impl GatewayArgs {
    fn load(&self) -> anyhow::Result<GatewayConfig> {
        let mut config = match &self.config {
            Some(file) => GatewayConfig::from_file(file)?,
            None => GatewayConfig::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(data) = &self.data {
            config.data_dir = data.clone();
        }
        if let Some(mode) = self.registration {
            config.registration = mode;
        }
        if self.memory_only {
            config.memory_only = true;
        }
        if let Some(addr) = self.metrics {
            config.metrics_listen = Some(addr);
        }
        Ok(config)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole local network on this machine: a directory authority, 3 mix layers × 2
    /// mix nodes, 2 providers and N gateways with open registration on
    /// http://127.0.0.1:PORT … PORT+N-1, all data under DIR. Prints the gateways and one JSON
    /// ready line, and writes DIR/network.toml for gateways started separately.
    Up {
        /// Data folder of the whole network.
        #[arg(long, default_value = "mixgate-data")]
        data: PathBuf,
        /// Client-server API port of the first gateway (gateway i listens on PORT + i).
        #[arg(long, default_value_t = 8008)]
        base_port: u16,
        /// Number of gateways (0: only the mixnet).
        #[arg(long, default_value_t = 2)]
        gateways: usize,
        /// Serve Prometheus metrics and the status page of the whole network on this address.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Run a gateway: the homeserver Matrix clients talk to.
    Gateway {
        #[command(flatten)]
        args: GatewayArgs,
        /// Join the mixnet this file describes (`network.toml` as written by `mixgate up`, or
        /// the keys of a `[network]` table); overrides `[network]` in the config file.
        /// Without a network the gateway runs alone.
        #[arg(long)]
        network: Option<PathBuf>,
        /// An application-service registration file (YAML); repeatable. Added to
        /// `appservices = [...]` of the config file.
        #[arg(long = "appservice", value_name = "FILE")]
        appservices: Vec<PathBuf>,
    },
    /// Run a mix node of the mixnet (`config/mixnode.toml`).
    Mixnode {
        /// Node config file.
        #[arg(long)]
        config: PathBuf,
        /// Serve Prometheus metrics on this address (overrides `metrics_listen`).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Run a provider: mixnet entry/exit and mailboxes of its gateways (`config/provider.toml`).
    Provider {
        /// Node config file.
        #[arg(long)]
        config: PathBuf,
        /// Serve Prometheus metrics on this address (overrides `metrics_listen`).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Run a directory authority (`config/directory.toml`).
    Directory {
        /// Directory config file.
        #[arg(long)]
        config: PathBuf,
        /// Serve Prometheus metrics on this address (overrides `metrics_listen`).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Print the public key (hex) of a node's or directory authority's key file, creating
    /// the file if it does not exist (for `authorities`, `[[peers]] key` and `allowed`).
    Key {
        /// The key file (`key_file` of the role's config).
        file: PathBuf,
    },
    /// Configuration files.
    Config {
        #[command(subcommand)]
        task: ConfigTask,
    },
    /// Operator tasks: on a stopped gateway's data, or with `--url` on a running gateway
    /// through its admin API (an admin's access token in `--token-file`).
    Admin {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// A running gateway's base URL (e.g. http://127.0.0.1:8008): act through its admin
        /// API instead of opening the data folder.
        #[arg(long, requires = "token_file")]
        url: Option<String>,
        /// File holding an admin's access token (with `--url`).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        #[command(subcommand)]
        task: AdminTask,
    },
}

#[derive(Subcommand)]
enum ConfigTask {
    /// Validate any role's config file without starting it (exit status 1 and a message
    /// naming the file and the key when it is wrong).
    Check {
        /// The file.
        file: PathBuf,
        /// The role (default: detected from the file's keys).
        #[arg(long, value_enum)]
        role: Option<gateway::config_check::ConfigRole>,
    },
}

#[derive(Subcommand)]
enum AdminTask {
    /// Create an account.
    CreateUser {
        /// Localpart (the part before the colon).
        username: String,
        /// Password.
        #[arg(long)]
        password: String,
        /// Make the account a server admin (may use the `/_synapse/admin` API).
        #[arg(long)]
        admin: bool,
    },
    /// Set a new password for an account.
    ResetPassword {
        /// Localpart or full user ID.
        username: String,
        /// New password.
        #[arg(long)]
        password: String,
    },
    /// Create a registration token and print it.
    CreateRegistrationToken {
        /// How many registrations it allows (default: one).
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
}

/// `mixgate admin --url … --token-file …`: the same tasks through a running gateway's API.
async fn admin_remote(
    url: &str,
    token_file: &std::path::Path,
    task: AdminTask,
) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading the admin token from {}", token_file.display()))?;
    let client = gateway::admin_client::AdminClient::new(url, &token);
    match task {
        AdminTask::CreateUser {
            username,
            password,
            admin,
        } => println!("{}", client.create_user(&username, &password, admin).await?),
        AdminTask::ResetPassword { username, password } => {
            let user = client.reset_password(&username, &password).await?;
            println!("password of {user} changed");
        }
        AdminTask::CreateRegistrationToken { uses } => {
            println!("{}", client.create_registration_token(uses).await?)
        }
    }
    Ok(())
}

async fn admin(args: &GatewayArgs, task: AdminTask) -> anyhow::Result<()> {
    let config = args.load()?;
    let gw = gateway::service::Gateway::open(config).context(
        "opening the gateway's data (if the gateway is running, use --url URL --token-file FILE \
         to act through its admin API)",
    )?;
    match task {
        AdminTask::CreateUser {
            username,
            password,
            admin,
        } => {
            let user =
                gateway::service::users::Users::validate_localpart(&username, gw.server_name())
                    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            gw.users
                .create(&user, Some(&password))
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            if admin {
                gateway::service::admin::users::upsert(
                    &gw,
                    &user,
                    gateway::service::admin::users::UserChange {
                        admin: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            }
            println!("{user}");
        }
        AdminTask::ResetPassword { username, password } => {
            let local = username
                .trim_start_matches('@')
                .split(':')
                .next()
                .unwrap_or_default();
            let user = gateway::service::users::Users::validate_localpart(local, gw.server_name())
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            gw.users
                .set_password(&user, &password)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!("password of {user} changed");
        }
        AdminTask::CreateRegistrationToken { uses } => {
            let token = gw
                .users
                .create_registration_token(Some(uses), None)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!("{token}");
        }
    }
    gw.db.flush_blocking()?;
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Gateway {
            args,
            network,
            appservices,
        } => {
            let mut config = args.load()?;
            config.appservices.extend(appservices);
            if let Some(file) = network {
                config.network = Some(NetworkConfig::from_file(&file)?);
            }
            gateway::serve::run(config).await
        }
        Command::Admin {
            gateway,
            url,
            token_file,
            task,
        } => match (url, token_file) {
            (Some(url), Some(file)) => admin_remote(&url, &file, task).await,
            _ => admin(&gateway, task).await,
        },
        Command::Key { file } => {
            println!("{}", gateway::roles::public_key(&file)?);
            Ok(())
        }
        Command::Config {
            task: ConfigTask::Check { file, role },
        } => {
            let role = gateway::config_check::check(&file, role)?;
            println!("{}: ok ({} config)", file.display(), role.name());
            Ok(())
        }
        Command::Mixnode { config, metrics } => {
            gateway::roles::run_node(&config, gateway::roles::NodeKind::Mix, metrics).await
        }
        Command::Provider { config, metrics } => {
            gateway::roles::run_node(&config, gateway::roles::NodeKind::Provider, metrics).await
        }
        Command::Directory { config, metrics } => {
            gateway::roles::run_directory(&config, metrics).await
        }
        Command::Up {
            data,
            base_port,
            gateways,
            metrics,
        } => {
            gateway::up::run(gateway::up::UpOptions {
                data,
                base_port,
                gateways,
                metrics,
            })
            .await
        }
    }
}

/// Caps glibc's malloc arenas. By default glibc creates up to 8 per core, one per thread that
/// allocates (tokio workers, blocking threads, sled's I/O threads), and keeps their freed memory:
/// on a 2-core machine that alone was ~8 MiB of a gateway's resident memory under load.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sled=warn,ruma_state_res=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mixgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mixgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
