use clap::Parser;
use nicheimage_tui::cli::{Cli, Role, WalletAction};
use nicheimage_tui::config::{self, ConfigSource};
use nicheimage_tui::runtime::{EventChannel, shutdown};
use nicheimage_tui::ui::theme::Theme;
use nicheimage_tui::{devnet, headless, logging, node, ui};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code for bad configuration or flags (clap uses 2 as well).
const EXIT_USAGE: u8 = 2;

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("nicheimage-tui: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// Raises the soft open-files limit to the hard one: every connection, replica pipe and log
/// file is a descriptor, and the usual soft 1024 runs out under load. Returns (before, after).
#[cfg(unix)]
fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur))
}

#[cfg(not(unix))]
fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    Err(std::io::Error::other("not supported on this platform"))
}

fn main() -> ExitCode {
    // SAFETY: the first thing the process does, before any thread or runtime exists. The
    // password must leave the environment before replicas (child processes) are started, or
    // they would inherit it.
    unsafe { nicheimage_tui::bittensor::wallet::take_password_env() };
    // Before any descriptor is opened; logged once logging is up.
    let nofile = raise_nofile_limit();
    let cli = Cli::parse();
    if cli.print_config_template {
        print!("{}", config::EXAMPLE);
        return ExitCode::SUCCESS;
    }
    let (mut config, source) = match config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => return fail(e),
    };
    cli.apply(&mut config);
    if let Err(e) = config.validate() {
        return fail(e);
    }
    nicheimage_tui::image::configure(nicheimage_tui::image::DecodeLimits::with_side(
        config.limits.max_image_side,
    ));
    #[cfg(feature = "local-infer")]
    if let Some(Role::TinyCheckpoint {
        out,
        name,
        annotator: Some(net),
        ..
    }) = &cli.command
    {
        let file = out.join(format!("{name}.safetensors"));
        return match nicheimage_tui::diffusion::tiny::write_random_annotator(*net, &file, 0) {
            Ok(()) => {
                println!("{}", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    if let Some(Role::TinyCheckpoint {
        out,
        name,
        arch,
        controlnet,
        ..
    }) = &cli.command
    {
        return tiny_checkpoint(out, name, *arch, *controlnet);
    }
    if let Some(Role::Generate(args)) = &cli.command {
        return generate(args, config.node.device);
    }
    if let Some(Role::Replica(a)) = &cli.command {
        return replica(a);
    }
    if let Some(Role::Wallet { action, .. }) = &cli.command {
        return wallet(action, &config);
    }
    if let Some(Role::Chain(_)) = &cli.command {
        return chain(&config);
    }
    if let Some(Role::Weights { action }) = &cli.command {
        return weights(action, &config);
    }
    if let Some(Role::ProxyClient(args)) = &cli.command {
        return proxy_client(args, &config);
    }
    // No config file and no role: the whole local subnet, so a first run shows a living node
    // (a build without local inference cannot generate its images: it shows the plain console).
    let devnet = cli.devnet
        || (cfg!(feature = "local-infer")
            && cli.command.is_none()
            && matches!(source, ConfigSource::Defaults));
    if devnet && cli.command.is_some() {
        return fail("--devnet runs the whole local subnet and takes no subcommand");
    }
    let mines = matches!(cli.command, Some(Role::Miner(_)));
    let rewards = matches!(cli.command, Some(Role::Reward(_)));
    let validates = matches!(cli.command, Some(Role::Validator(_)));
    let serves_endpoint = matches!(cli.command, Some(Role::Endpoint(_)))
        || ((cli.command.is_none() || mines) && config.endpoint.enabled);
    // Roles run headless, as the seed's separate processes did.
    let headless = cli.no_ui || cli.command.is_some() || !std::io::stdout().is_terminal();
    let theme = if headless {
        None
    } else {
        match Theme::load(&config.ui.theme, std::env::var_os("NO_COLOR").is_some()) {
            Ok(t) => Some(t),
            Err(e) => return fail(e),
        }
    };
    // The console asks for an encrypted hotkey's password before it takes the terminal;
    // headless runs read NICHEIMAGE_WALLET_PASSWORD.
    if !headless
        && !devnet
        && std::io::stdin().is_terminal()
        && let Err(e) = ask_hotkey_password(&config)
    {
        return fail(e);
    }
    let data_dir = config
        .node
        .data_dir
        .clone()
        .unwrap_or_else(config::default_data_dir);

    let channel = EventChannel::new();
    let _log_guards = match logging::init(
        logging::LogSettings {
            data_dir: &data_dir,
            filter: &config.node.log_level,
            format: config.node.log_format,
            stdout: headless,
        },
        channel.sender.clone(),
    ) {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    match &nofile {
        Ok((before, after)) => tracing::debug!(before, after, "open-files limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit; keeping it"),
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            config = %source,
            data_dir = %data_dir.display(),
            mode = if headless { "headless" } else { "tui" },
            "starting node"
        );
        let devnet = match devnet.then(|| devnet::prepare(&config, &data_dir)).transpose() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot set up the devnet");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let config = devnet.as_ref().map_or(config, |d| d.config.clone());
        let mut runtime = node::build(&config, channel);
        if let Some(d) = &devnet {
            tracing::info!(dir = %d.dir.display(), miners = d.miners.len(), "running the local devnet");
            if let Err(e) = d.add_to(&mut runtime) {
                tracing::error!(error = %e, "cannot set up the devnet");
                return ExitCode::from(EXIT_USAGE);
            }
        } else {
            if serves_endpoint
                && let Err(e) = node::add_endpoint(&mut runtime, &config, &data_dir)
            {
                tracing::error!(error = %e, "cannot set up the endpoint");
                return ExitCode::from(EXIT_USAGE);
            }
            let roles = ChainRoles {
                mines,
                rewards,
                validates,
            };
            if (config.subtensor.watch || mines || rewards || validates)
                && let Err(e) = add_chain_roles(&mut runtime, &config, &data_dir, roles)
            {
                tracing::error!(error = %e, "cannot set up the chain roles");
                return ExitCode::from(EXIT_USAGE);
            }
        }
        let node = runtime.start();
        if let Some(limit) = cli.duration {
            let shutdown = node.shutdown.clone();
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                tracing::info!(secs = limit.as_secs_f64(), "--duration reached; stopping");
                shutdown.cancel();
            });
        }
        let reload = headless.then(|| reload_on_hup(&cli, node.commands.clone()));
        if let Err(e) = shutdown::on_signals(node.shutdown.clone(), reload) {
            tracing::error!(error = %e, "cannot install signal handlers");
        }
        match theme {
            None => {
                headless::run(&node, Duration::from_secs(config.node.status_interval_secs)).await
            }
            Some(theme) => {
                let settings = ui::UiSettings {
                    theme,
                    mouse: config.ui.mouse,
                    no_color: std::env::var_os("NO_COLOR").is_some(),
                    max_fps: config.ui.max_fps,
                    config_source: match (&devnet, &source) {
                        (Some(d), _) => format!("devnet in {}", d.dir.display()),
                        (None, ConfigSource::File(p)) => p.display().to_string(),
                        (None, ConfigSource::Defaults) => "defaults".into(),
                    },
                };
                if let Err(e) = ui::run(&node, settings).await {
                    tracing::error!(error = %e, "console failed; shutting down");
                }
                node.shutdown.cancel();
            }
        }
        let state = node.state.clone();
        node.wait().await;
        let last = state.borrow().clone();
        if headless {
            headless::print_final(&last);
        }
        if let Some(d) = &devnet {
            let summary = devnet::summary::Summary::collect(d, &last).await;
            print!("{}", summary.text());
            if headless {
                println!("{}", summary.json_line());
            }
        }
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

#[cfg(feature = "local-infer")]
fn tiny_checkpoint(
    out: &std::path::Path,
    name: &str,
    arch: nicheimage_tui::catalogue::Arch,
    controlnet: Option<i64>,
) -> ExitCode {
    use nicheimage_tui::{catalogue::Arch, diffusion::tiny};
    let written = match (controlnet, arch) {
        (Some(seed), _) => {
            let dir = out.join(name);
            tiny::write_tiny_controlnet(&dir, seed).map(|()| dir)
        }
        (None, Arch::Sd15) => tiny::write_tiny_sd15(out, name),
        (None, Arch::Sdxl) => tiny::write_tiny_sdxl(out, name),
    };
    match written {
        Ok(file) => {
            println!("{}", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[cfg(not(feature = "local-infer"))]
fn tiny_checkpoint(
    _out: &std::path::Path,
    _name: &str,
    _arch: nicheimage_tui::catalogue::Arch,
    _controlnet: Option<i64>,
) -> ExitCode {
    fail("this build has no local inference (built without the local-infer feature)")
}

#[cfg(feature = "local-infer")]
fn generate(a: &nicheimage_tui::cli::GenerateArgs, device: config::DeviceChoice) -> ExitCode {
    use nicheimage_tui::diffusion::{dtype_for, pipeline, select_device};
    let run = || -> Result<String, Box<dyn std::error::Error>> {
        let scheduler = a.scheduler.parse()?;
        let device = select_device(device)?;
        let started = std::time::Instant::now();
        let sd = pipeline::StableDiffusion::load(
            &a.checkpoint,
            a.config_dir.as_deref(),
            device,
            dtype_for(device),
        )?;
        let loaded = started.elapsed();
        let req = pipeline::Txt2Img {
            prompt: a.prompt.clone(),
            negative_prompt: a.negative_prompt.clone(),
            seed: a.seed,
            num_inference_steps: a.steps,
            guidance_scale: a.guidance_scale,
            width: a.width,
            height: a.height,
            scheduler,
        };
        let image = match (&a.image, &a.controlnet_dir) {
            (None, _) => sd.txt2img(&req, false)?.image,
            (Some(path), controlnet_dir) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let input = nicheimage_tui::image::RgbImage::from_png(&bytes)?
                    .resized_for_condition(a.condition_resolution)?;
                match controlnet_dir {
                    None => {
                        let req = pipeline::Img2Img {
                            base: req,
                            image: input,
                            strength: a.strength,
                        };
                        sd.img2img(&req, false)?.image
                    }
                    Some(dir) => {
                        use nicheimage_tui::diffusion::seed_controlnet::SeedControlNet;
                        let nets = SeedControlNet::load(dir, device, dtype_for(device))?;
                        let maps = nets.control_images(&input)?;
                        for (map, name) in maps.iter().zip(["canny", "depth", "normal"]) {
                            let file = a.out.with_extension(format!("{name}.png"));
                            std::fs::write(&file, map.to_png()?)
                                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                        }
                        nets.generate(&sd, &req, &input, [1.0; 3])?.image
                    }
                }
            }
        };
        let image = match &a.nsfw_classifier {
            None => image,
            Some(dir) => {
                let verdict =
                    nicheimage_tui::diffusion::nsfw::NsfwFilter::load(dir, device)?.apply(image);
                println!(
                    "nsfw score {:.3}{}",
                    verdict.nsfw_score,
                    if verdict.blanked { ": blacked out" } else { "" }
                );
                verdict.image
            }
        };
        std::fs::write(&a.out, image.to_png()?)
            .map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
        Ok(format!(
            "{} ({}x{}, {device:?}, loaded in {:.2}s, generated in {:.2}s)",
            a.out.display(),
            image.width,
            image.height,
            loaded.as_secs_f64(),
            (started.elapsed() - loaded).as_secs_f64()
        ))
    };
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[cfg(not(feature = "local-infer"))]
fn generate(_a: &nicheimage_tui::cli::GenerateArgs, _device: config::DeviceChoice) -> ExitCode {
    fail("this build has no local inference (built without the local-infer feature)")
}

#[cfg(feature = "local-infer")]
fn replica(a: &nicheimage_tui::cli::ReplicaArgs) -> ExitCode {
    // Its log lines go to stderr, where the pool reads them into the node's log.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .try_init();
    match nicheimage_tui::replica::child::run(
        &a.checkpoint,
        a.config_dir.as_deref(),
        &a.scheduler,
        a.device,
        a.nsfw_classifier.as_deref(),
        a.controlnet_dir.as_deref(),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replica: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "local-infer"))]
fn replica(_a: &nicheimage_tui::cli::ReplicaArgs) -> ExitCode {
    fail("this build has no local inference (built without the local-infer feature)")
}

fn wallet(action: &WalletAction, config: &config::Config) -> ExitCode {
    use nicheimage_tui::bittensor::wallet::Wallet;
    let w = &config.wallet;
    let wallet = Wallet::new(&w.path, &w.name, &w.hotkey);
    match action {
        WalletAction::NewHotkey(_) => match wallet.create_hotkey() {
            Ok(key) => {
                println!("hotkey {}  {}", key.ss58(), wallet.hotkey_path().display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        WalletAction::Show(_) => {
            let password = nicheimage_tui::bittensor::wallet::password_from_env();
            match wallet.load_hotkey(password.as_ref().map(|p| p.as_str())) {
                Ok(loaded) => {
                    println!(
                        "hotkey  {}  {}",
                        loaded.keypair.ss58(),
                        wallet.hotkey_path().display()
                    );
                    for warning in loaded.warnings {
                        println!("warning: {warning}");
                    }
                }
                Err(e) => return fail(e),
            }
            match wallet.coldkey_address() {
                Ok(address) => {
                    println!("coldkey {address}  {}", wallet.coldkeypub_path().display())
                }
                Err(e) => println!("coldkey (none: {e})"),
            }
            ExitCode::SUCCESS
        }
    }
}

/// Exit 1 when the chain cannot be read: the operator asked for exactly that.
/// SIGHUP in headless mode: read the config file again and apply what can change while running
/// (today: `[miner.blacklist]`); a bad file is reported and changes nothing.
fn reload_on_hup(
    cli: &Cli,
    commands: tokio::sync::mpsc::Sender<nicheimage_tui::runtime::Command>,
) -> Box<dyn Fn() + Send> {
    let path = cli.config.clone();
    // The same flags again (they override the file on every reload, as at start).
    let cli = Cli::parse_from(std::env::args_os());
    Box::new(move || {
        let loaded = config::load(path.as_deref()).and_then(|(mut c, _)| {
            cli.apply(&mut c);
            c.validate().map(|()| c)
        });
        match loaded {
            Ok(c) => {
                tracing::info!(
                    "SIGHUP: config read again; applying [miner.blacklist] (other changes need a restart)"
                );
                let command = nicheimage_tui::runtime::Command::SetBlacklist(c.miner.blacklist);
                if commands.try_send(command).is_err() {
                    tracing::warn!("SIGHUP: the node is busy or stopping; rules unchanged");
                }
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: config not reloaded"),
        }
    })
}

fn proxy_client(a: &nicheimage_tui::cli::ProxyClientArgs, config: &config::Config) -> ExitCode {
    use nicheimage_tui::proxy::{auth, client};
    if a.new_key {
        return match auth::create_signing_key(&a.key) {
            Ok(public) => {
                println!("{public}");
                eprintln!(
                    "wrote {}; set proxy.owner_public_key = \"{public}\" on the validator",
                    a.key.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    let key = match auth::load_signing_key(&a.key) {
        Ok(k) => k,
        Err(e) => return fail(format!("{e} (create one with --new-key)")),
    };
    let url = a
        .url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}/validator_proxy", config.proxy.port));
    let mut payload = serde_json::json!({ "model_name": a.model_name, "prompt": a.prompt });
    if let Some(seed) = a.seed {
        payload["seed"] = seed.into();
    }
    let body = serde_json::json!({ "payload": payload, "miner_uid": a.miner_uid });
    let runtime = match one_shot_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let started = std::time::Instant::now();
    let http = match nicheimage_tui::http::client() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let answer = runtime.block_on(client::request(
        &http,
        &url,
        &key,
        &body,
        Duration::from_secs(a.timeout),
    ));
    let written = answer.and_then(|image| {
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(image.trim())
            .map_err(|e| format!("the answer is not base64: {e}"))?;
        std::fs::write(&a.out, &png)
            .map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
        Ok(png.len())
    });
    match written {
        Ok(bytes) => {
            println!(
                "{} ({bytes} bytes) in {:.2} s",
                a.out.display(),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nicheimage-tui: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The single-threaded runtime the one-shot commands (`chain`, `weights`, `proxy-client`) run on.
fn one_shot_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the async runtime: {e}")))
}

fn chain(config: &config::Config) -> ExitCode {
    let hotkey = node::load_hotkey(config).ok().map(|k| k.ss58().to_string());
    let runtime = match one_shot_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let chain = match node::open_chain(config, hotkey.as_deref()) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let netuid = config.subtensor.netuid;
        println!("{}", chain.describe());
        let report = async {
            use nicheimage_tui::bittensor::chain::standing;
            let block = chain.block().await?;
            println!("block {block}");
            let h = chain.hyperparams(netuid).await?;
            let mode = chain.weights_mode(netuid).await?;
            let clock = standing::clock(block, netuid, &h);
            println!(
                "subnet {netuid}: tempo {}, next epoch in {} blocks, weights rate limit {} blocks, version key {}, {}, registration cost {:.3}, immunity period {} blocks",
                h.tempo,
                clock.blocks_to_epoch,
                h.weights_rate_limit,
                h.weights_version_key,
                mode.describe(),
                clock.registration_cost,
                h.immunity_period
            );
            let graph = chain.metagraph(netuid).await?;
            let served = graph.neurons.iter().filter(|n| n.axon.is_served()).count();
            let permits = graph.neurons.iter().filter(|n| n.validator_permit).count();
            println!("{} neurons, {served} axons served, {permits} validator permits", graph.neurons.len());
            let Some(h_key) = hotkey.as_deref() else {
                println!("no hotkey loaded ([wallet] section)");
                return Ok(());
            };
            if graph.by_hotkey(h_key).is_none() {
                println!("hotkey {h_key} is NOT registered on subnet {netuid}");
                return Ok(());
            }
            let uids = graph.neurons.iter().map(|n| n.uid).collect();
            let registered = chain.registration_blocks(netuid, uids).await?;
            let Some(s) = standing::standing(&graph, h_key, block, &h, &|uid| registered.get(&uid).copied()) else {
                return Ok(());
            };
            println!(
                "hotkey {h_key}: uid {}, stake {:.3}, rank {:.4}, trust {:.4}, consensus {:.4}, incentive {:.4}, dividends {:.4}, emission {:.4}/tempo, validator trust {:.4}, validator permit {}",
                s.uid, s.stake, s.rank, s.trust, s.consensus, s.incentive, s.dividends, s.emission,
                s.validator_trust, if s.validator_permit { "yes" } else { "no" }
            );
            let immunity = match s.immunity_left {
                Some(0) => "immunity over".to_string(),
                Some(left) => format!("immune for {left} more blocks"),
                None => "immunity unknown".to_string(),
            };
            let risk = match s.pruning_place {
                Some((place, of)) => format!("place {place} of {of} in the deregistration order (1 goes first)"),
                None => "not in the deregistration order while immune".to_string(),
            };
            println!(
                "  last update {} blocks ago (rate limit {}), {immunity}, {risk}, axon {}",
                s.blocks_since_update, h.weights_rate_limit, s.axon
            );
            Ok::<_, nicheimage_tui::bittensor::chain::ChainError>(())
        };
        match report.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("nicheimage-tui: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// Prompts (echo off) for the configured hotkey's password when the file is encrypted and no
/// password was given in the environment; three tries, each checked by decrypting.
fn ask_hotkey_password(config: &config::Config) -> Result<(), String> {
    use nicheimage_tui::bittensor::wallet::{self, Wallet};
    let w = &config.wallet;
    let wallet = Wallet::new(&w.path, &w.name, &w.hotkey);
    if !wallet.hotkey_is_encrypted() || wallet::password_from_env().is_some() {
        return Ok(());
    }
    for _ in 0..3 {
        let typed = read_hidden(&format!(
            "Password for the hotkey {}: ",
            wallet.hotkey_path().display()
        ))?;
        if wallet.load_hotkey(Some(typed.as_str())).is_ok() {
            wallet::provide_password(typed);
            return Ok(());
        }
        eprintln!("wrong password");
    }
    Err(format!(
        "cannot decrypt {} with the password given",
        wallet.hotkey_path().display()
    ))
}

/// One line from the terminal with echo off (restored afterwards, also on error).
fn read_hidden(prompt: &str) -> Result<zeroize::Zeroizing<String>, String> {
    use std::io::{BufRead, Write};
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    // SAFETY: tcgetattr/tcsetattr on stdin (a terminal, checked by the caller) with a struct we
    // own; the original settings are written back before returning.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut term) } != 0 {
        return Err(format!(
            "cannot read the terminal's settings: {}",
            std::io::Error::last_os_error()
        ));
    }
    let original = term;
    term.c_lflag &= !libc::ECHO;
    term.c_lflag |= libc::ECHONL;
    // SAFETY: as above.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &term) };
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: as above.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &original) };
    read.map_err(|e| format!("reading the password: {e}"))?;
    let trimmed = line.trim_end_matches(['\r', '\n']).to_string();
    Ok(zeroize::Zeroizing::new(trimmed))
}

/// `weights set | reveal | status` against the configured subtensor node.
fn weights(action: &nicheimage_tui::cli::WeightsAction, config: &config::Config) -> ExitCode {
    use nicheimage_tui::bittensor::chain::subtensor::SubtensorChain;
    use nicheimage_tui::bittensor::chain::{Network, resolve_network};
    use nicheimage_tui::cli::WeightsAction;
    use nicheimage_tui::weights_cmd;
    let s = &config.subtensor;
    let chain = match resolve_network(&s.network, s.chain_endpoint.as_deref()) {
        Ok(Network::Remote { name, url }) => {
            SubtensorChain::new(&name, &url).with_block_time(s.block_time_secs)
        }
        Ok(Network::Embedded) => {
            return fail(
                "weights commands talk to a subtensor node; the embedded chain lives inside a running node",
            );
        }
        Err(e) => return fail(e),
    };
    let hotkey = match node::load_hotkey(config) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let data_dir = config
        .node
        .data_dir
        .clone()
        .unwrap_or_else(config::default_data_dir);
    let commits = weights_cmd::commits_path(&data_dir);
    let runtime = match one_shot_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let netuid = s.netuid;
    let done = runtime.block_on(async {
        match action {
            WeightsAction::Set(args) => {
                let request = weights_cmd::SetRequest {
                    netuid,
                    uids: args.uids.clone(),
                    weights: args.weights.clone(),
                    version_key: args.version_key,
                    wait: args.wait,
                };
                weights_cmd::set(&chain, &hotkey, &request, &commits).await
            }
            WeightsAction::Reveal(_) => {
                weights_cmd::reveal(&chain, &hotkey, netuid, &commits).await
            }
            WeightsAction::Status(_) => {
                weights_cmd::status(&chain, &hotkey, netuid, &commits).await
            }
        }
    });
    match done {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nicheimage-tui: {e}");
            ExitCode::from(1)
        }
    }
}

/// Which chain-backed roles this run has.
#[derive(Clone, Copy)]
struct ChainRoles {
    mines: bool,
    rewards: bool,
    validates: bool,
}

/// The chain, opened once and shared: the watcher always, the miner when asked. A miner without a
/// loadable hotkey cannot start; the watcher then just watches the subnet.
fn add_chain_roles(
    runtime: &mut nicheimage_tui::runtime::Runtime,
    config: &config::Config,
    data_dir: &std::path::Path,
    roles: ChainRoles,
) -> Result<(), String> {
    let ChainRoles {
        mines,
        rewards,
        validates,
    } = roles;
    if rewards && config.reward.disable_secure {
        // No allow-list: the reward service needs no chain at all.
        return node::add_reward(runtime, config, data_dir, None);
    }
    let hotkey = match node::load_hotkey(config) {
        Ok(key) => Some(std::sync::Arc::new(key)),
        Err(e) if mines || validates => return Err(format!("the neuron needs its hotkey: {e}")),
        Err(e) => {
            tracing::warn!("no hotkey for the chain view: {e}");
            None
        }
    };
    let address = hotkey.as_ref().map(|k| k.ss58().to_string());
    let chain = node::open_chain(config, address.as_deref())?;
    node::add_chain_watch(runtime, config, chain.clone(), address);
    if rewards {
        node::add_reward(runtime, config, data_dir, Some(chain.clone()))?;
    }
    if let (true, Some(key)) = (validates, hotkey.clone()) {
        node::add_validator(runtime, config, data_dir, chain.clone(), key)?;
    }
    if let (true, Some(key)) = (mines, hotkey) {
        node::add_miner(runtime, config, chain, key, node::MinerRole::default())?;
    }
    Ok(())
}
