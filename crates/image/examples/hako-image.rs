//! A throwaway command line over the library, for trying it by hand until
//! the engine CLI exists. Not the CLI.
//!
//! ```text
//! cargo run --example hako-image -- [--data DIR] pull REF [--insecure]
//! cargo run --example hako-image -- images | inspect NAME | rmi NAME [-f] | gc
//! cargo run --example hako-image -- import PATH NAME | load ARCHIVE
//! cargo run --example hako-image -- login REGISTRY USER PASSWORD | logout REGISTRY
//! cargo run --example hako-image -- mount IMAGE ID | umount ID
//! ```

use std::error::Error;

use hako_image::{auth, Credentials, PullOptions, Store};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let data = match args.iter().position(|a| a == "--data") {
        Some(i) => {
            let d = args.get(i + 1).cloned().ok_or("--data needs a value")?;
            args.drain(i..=i + 1);
            d.into()
        }
        None => Store::default_data_dir(),
    };
    let flag = |args: &mut Vec<String>, f: &str| match args.iter().position(|a| a == f) {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    };
    let store = Store::open(&data)?;
    let arg = |i: usize| args.get(i).cloned().ok_or("missing argument");
    match args.first().map(String::as_str) {
        Some("pull") => {
            let insecure = flag(&mut args, "--insecure");
            let opts = PullOptions {
                insecure,
                ..PullOptions::default()
            };
            println!(
                "{}",
                store.pull(&args.get(1).cloned().ok_or("missing REF")?, &opts)?
            );
        }
        Some("images") => println!("{}", serde_json::to_string_pretty(&store.list()?)?),
        Some("inspect") => println!(
            "{}",
            serde_json::to_string_pretty(&store.inspect(&arg(1)?)?)?
        ),
        Some("rmi") => {
            let force = flag(&mut args, "-f");
            println!(
                "{:?}",
                store.remove(&args.get(1).cloned().ok_or("missing NAME")?, force, &|_| {
                    false
                })?
            );
        }
        Some("gc") => println!("{:?}", store.gc()?),
        Some("import") => println!("{}", store.import_rootfs(arg(1)?, &arg(2)?)?),
        Some("load") => println!("{:?}", store.load(arg(1)?)?),
        Some("login") => auth::login(
            &auth::default_auth_file(),
            &arg(1)?,
            &Credentials {
                username: arg(2)?,
                password: arg(3)?,
            },
        )?,
        Some("logout") => println!("{}", auth::logout(&auth::default_auth_file(), &arg(1)?)?),
        Some("mount") => {
            let m = store.prepare_rootfs(&arg(1)?, &arg(2)?)?;
            println!("{} ({:?})", m.path().display(), m.kind());
        }
        Some("umount") => store.remove_rootfs(&arg(1)?)?,
        _ => return Err("usage: see the comment at the top of examples/hako-image.rs".into()),
    }
    Ok(())
}
