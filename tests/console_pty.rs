//! The console end to end: the real binary in a pseudo-terminal running the devnet (one miner),
//! its screen read back through a terminal emulator. Views switch, the proxy is switched off
//! from its view with a confirmation, help opens and closes, and `q` ends the program with exit
//! status 0 and the terminal restored (main screen, cursor shown).
#![cfg(feature = "local-infer")]

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

struct Console {
    screen: Arc<Mutex<vt100::Parser>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
}

impl Console {
    fn text(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits (up to `secs`) until the screen shows `needle`.
    fn wait_for(&self, needle: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the screen never showed {needle:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn start(home: &std::path::Path) -> Console {
    spawn(
        home,
        &["--devnet"],
        "[node]\ndevice = \"cpu\"\n[metrics]\nenabled = false\n[devnet]\nminers = 1\nreplicas = 1\nround_secs = 2\n",
    )
}

/// The binary in a 30×110 pseudo-terminal with `args` and `config` (written to the home).
fn spawn(home: &std::path::Path, args: &[&str], config_text: &str) -> Console {
    let config = home.join("config.toml");
    std::fs::write(&config, config_text).unwrap();
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 110,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_nicheimage-tui"));
    cmd.args(args);
    cmd.arg("--config");
    cmd.arg(&config);
    cmd.env("HOME", home);
    cmd.env("XDG_DATA_HOME", home.join("data"));
    cmd.env("TERM", "xterm-256color");
    let child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let screen = Arc::new(Mutex::new(vt100::Parser::new(30, 110, 0)));
    let mut reader = pty.master.try_clone_reader().unwrap();
    let feed = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            feed.lock().unwrap().process(&buf[..n]);
        }
    });
    let writer = pty.master.take_writer().unwrap();
    // The master must outlive the child's use of the terminal.
    std::mem::forget(pty.master);
    Console {
        screen,
        writer,
        child,
    }
}

#[test]
fn views_proxy_switch_help_and_a_clean_quit() {
    let home = tempfile::tempdir().unwrap();
    let mut console = start(home.path());
    console.wait_for("1:Overview", 60);
    console.wait_for("proxy ON", 90);

    console.keys("5");
    console.wait_for("proxy — p switches it", 5);
    console.keys("p");
    console.wait_for("Switch the validator proxy OFF", 5);
    console.keys("y");
    console.wait_for("OFF  auth", 20);

    console.keys("4");
    console.wait_for("why (last round)", 5);
    console.keys("?");
    console.wait_for("show or hide this help", 5);
    console.keys("\x1b");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!console.text().contains("show or hide this help"));

    console.keys("q");
    if console.text().contains("quit anyway") {
        console.keys("y");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = console.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after q:\n{}",
            console.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(300));
    let parser = console.screen.lock().unwrap();
    assert!(
        !parser.screen().alternate_screen(),
        "left in the alternate screen"
    );
    assert!(!parser.screen().hide_cursor(), "cursor left hidden");
}

/// An encrypted hotkey in console mode: the password is asked on the terminal (not echoed)
/// before the console starts; a wrong one is asked again; the right one starts the console.
#[test]
fn the_console_asks_for_an_encrypted_hotkeys_password() {
    use nicheimage_bittensor::keyfile;
    let home = tempfile::tempdir().unwrap();
    let password = "tr0ub4dor&3";
    let phrase = keyfile::new_phrase().unwrap();
    let (key, json) = keyfile::json_for_phrase(&phrase).unwrap();
    let hotkeys = home.path().join("wallets/op/hotkeys");
    std::fs::create_dir_all(&hotkeys).unwrap();
    let file = hotkeys.join("h");
    std::fs::write(
        &file,
        keyfile::encrypt_nacl(json.as_bytes(), password).unwrap(),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = format!(
        "[node]\ndevice = \"cpu\"\n[metrics]\nenabled = false\n\
         [wallet]\npath = \"{}\"\nname = \"op\"\nhotkey = \"h\"\n\
         [subtensor]\nnetwork = \"embedded\"\nwatch = true\n",
        home.path().join("wallets").display()
    );
    let mut console = spawn(home.path(), &[], &config);
    console.wait_for("Password for the hotkey", 30);
    console.keys("not it\r");
    console.wait_for("wrong password", 30);
    assert!(
        !console.text().contains("not it"),
        "the password is not echoed"
    );
    console.keys(&format!("{password}\r"));
    console.wait_for("1:Overview", 60);
    assert!(!console.text().contains(password));
    drop(key);
    console.keys("q");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if console.text().contains("quit anyway") {
            console.keys("y");
        }
        if let Some(status) = console.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not quit:\n{}",
            console.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
