//! The `atelier` command line: parses the subcommand and calls into the library.

use std::io::Read;
use std::process::ExitCode;

use atelier::auth::initdata::{self, Options, Verifier};
use atelier::config::Settings;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "atelier",
    version,
    about = "Atelier: AI try-on and photo editing for a Telegram Mini App"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// HTTP API and WebSocket.
    Serve,
    /// Job workers and scheduled sweeps.
    Worker,
    /// Run the embedded database migrations, then exit.
    Migrate,
    /// Migrate, then serve and work in one process: the local default.
    Dev,
    /// Telegram initData tools for support and demos.
    #[command(subcommand)]
    InitData(InitDataCommand),
    /// The Telegram bot: register the webhook, commands and menu button, or show the webhook.
    #[command(subcommand)]
    Bot(BotCommand),
    /// Print the OpenAPI document (YAML).
    Openapi,
    /// Exit 0 when the local server answers `GET /ready` with 200 (container health checks).
    Healthcheck {
        #[arg(long, env = "PORT", default_value_t = 8080)]
        port: u16,
    },
}

#[derive(Subcommand, Clone, Copy)]
enum BotCommand {
    /// setWebhook (PUBLIC_BASE_URL, TELEGRAM_WEBHOOK_SECRET), setMyCommands (ru, en, and the
    /// operators' commands in each ADMIN_IDS chat), setChatMenuButton (web_app); then prints
    /// getWebhookInfo.
    Setup,
    /// Print getWebhookInfo.
    Status,
}

#[derive(Subcommand)]
enum InitDataCommand {
    /// Read one initData string on stdin and print the verdict as JSON.
    /// Exit status: 0 valid, 1 invalid, 2 usage error.
    Verify(VerifyArgs),
    /// Print a correctly signed initData string for a test user.
    Sign(SignArgs),
}

#[derive(Args)]
struct VerifyArgs {
    /// The bot token (HMAC check); defaults to $TELEGRAM_BOT_TOKEN when no key flag is given.
    #[arg(long, conflicts_with_all = ["bot_id", "public_key"])]
    bot_token: Option<String>,
    /// The bot id, for the Ed25519 third-party check.
    #[arg(long, requires = "public_key")]
    bot_id: Option<i64>,
    /// Telegram's public key: `prod`, `test` or 64 hex characters.
    #[arg(long, requires = "bot_id")]
    public_key: Option<String>,
    /// The time to check against, Unix seconds (default: now).
    #[arg(long)]
    now: Option<i64>,
    /// Maximum age in seconds; 0 turns the expiry check off.
    #[arg(long, default_value_t = 86_400)]
    max_age: u64,
}

#[derive(Args)]
struct SignArgs {
    #[arg(long, env = "TELEGRAM_BOT_TOKEN", hide_env_values = true)]
    bot_token: String,
    #[arg(long)]
    user_id: i64,
    #[arg(long, default_value = "Test")]
    first_name: String,
    #[arg(long)]
    last_name: Option<String>,
    #[arg(long)]
    username: Option<String>,
    #[arg(long, default_value = "en")]
    language_code: String,
    #[arg(long)]
    start_param: Option<String>,
    /// Unix seconds (default: now).
    #[arg(long)]
    auth_date: Option<i64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::InitData(InitDataCommand::Verify(args)) => verify(args),
        Command::InitData(InitDataCommand::Sign(args)) => sign(args),
        Command::Openapi => match atelier::openapi::yaml() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Healthcheck { port } => healthcheck(port),
        command => run_service(command),
    }
}

/// One plain HTTP/1.0 request to 127.0.0.1: no runtime, no TLS, a 3 s budget.
fn healthcheck(port: u16) -> ExitCode {
    use std::io::Write as _;
    let timeout = std::time::Duration::from_secs(3);
    let check = || -> std::io::Result<String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"GET /ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    match check() {
        Ok(head) if head.split(' ').nth(1) == Some("200") => ExitCode::SUCCESS,
        Ok(head) => {
            eprintln!("atelier: not ready: {}", head.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("atelier: no answer on port {port}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_service(command: Command) -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("atelier: {e}");
            return ExitCode::from(2);
        }
    };
    // Before the log subscriber, so that its error lines are reported from the first one.
    let _reporting = atelier::error_reporting::init(&settings);
    atelier::telemetry::init_tracing(settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e.into()),
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Migrate => migrate(&settings).await,
            Command::Serve => atelier::run::serve(settings, false).await,
            Command::Worker => atelier::run::worker(settings).await,
            Command::Dev => {
                migrate(&settings).await?;
                atelier::run::serve(settings, true).await
            }
            Command::Bot(bot) => {
                let info = match bot {
                    BotCommand::Setup => atelier::bot::setup::setup(&settings).await?,
                    BotCommand::Status => atelier::bot::setup::status(&settings).await?,
                };
                println!("{}", serde_json::to_string_pretty(&info)?);
                Ok(())
            }
            Command::InitData(_) | Command::Openapi | Command::Healthcheck { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let applied = atelier::db::run_migrations(settings.database_url.expose_secret()).await?;
    tracing::info!(count = applied.len(), ?applied, "migrations applied");
    Ok(())
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("atelier: {e:#}");
    ExitCode::FAILURE
}

fn verify(args: VerifyArgs) -> ExitCode {
    let usage = |msg: &str| {
        eprintln!("atelier init-data verify: {msg}");
        ExitCode::from(2)
    };
    // The environment's token is only a fallback: explicit key flags always win.
    let env_token = || {
        std::env::var("TELEGRAM_BOT_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
    };
    let verifier = match (
        args.bot_id,
        args.public_key,
        args.bot_token.or_else(env_token),
    ) {
        (Some(bot_id), Some(key), _) => match Verifier::public_key_from_name_or_hex(&key) {
            Ok(public_key) => Verifier::ThirdParty { bot_id, public_key },
            Err(e) => return usage(&format!("--public-key: {e}")),
        },
        (None, None, Some(token)) => Verifier::BotToken(token),
        _ => return usage("give --bot-token, or --bot-id with --public-key"),
    };
    let mut raw = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut raw) {
        return usage(&format!("reading stdin: {e}"));
    }
    let now = args.now.unwrap_or_else(|| chrono::Utc::now().timestamp());
    let opts = Options {
        max_age_secs: args.max_age,
        ..Options::default()
    };
    let (verdict, code) = match initdata::validate(raw.trim(), &verifier, &opts, now) {
        Ok(data) => (
            serde_json::json!({
                "valid": true, "reason": null,
                "user_id": data.user.as_ref().map(|u| u.id), "auth_date": data.auth_date,
            }),
            ExitCode::SUCCESS,
        ),
        Err(e) => (
            serde_json::json!({"valid": false, "reason": e.reason(), "user_id": null, "auth_date": null}),
            ExitCode::from(1),
        ),
    };
    println!("{verdict}");
    code
}

fn sign(args: SignArgs) -> ExitCode {
    let mut user = serde_json::json!({"id": args.user_id, "first_name": args.first_name,
        "language_code": args.language_code, "allows_write_to_pm": true});
    if let Some(last) = args.last_name {
        user["last_name"] = last.into();
    }
    if let Some(username) = args.username {
        user["username"] = username.into();
    }
    let auth_date = args
        .auth_date
        .unwrap_or_else(|| chrono::Utc::now().timestamp())
        .to_string();
    let user = user.to_string();
    let query_id = format!("AA{}", args.user_id);
    let mut pairs = vec![
        ("query_id", query_id.as_str()),
        ("user", user.as_str()),
        ("auth_date", auth_date.as_str()),
    ];
    if let Some(sp) = args.start_param.as_deref() {
        pairs.push(("start_param", sp));
    }
    println!("{}", initdata::sign(&args.bot_token, &pairs));
    ExitCode::SUCCESS
}
