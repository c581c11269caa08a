//! `DELEGATE_DELAYED_LEAVE`: the program hands its delayed leave to the authorization service,
//! which keeps it in the call while its LiveKit connection lives. Cut off from its homeserver
//! (every request answered 502) while its media flows, a delegating program stays in the call
//! far past its 10 s delay; one that does not delegate is out within about that delay, and
//! comes back once the homeserver answers again. Needs `cargo xtask devstack up`.

mod common;

use std::time::{Duration, Instant};

use common::{Bot, FilteringProxy, Setup};
use nix::sys::signal::Signal;

const WAIT: Duration = Duration::from_secs(60);
/// How long the homeserver is out of reach: three times the delayed leave's delay.
const CUT: Duration = Duration::from_secs(30);

/// Starts the program through a proxy to the homeserver and waits until it is in the call and
/// on LiveKit; the program, the proxy and its device.
async fn in_the_call(setup: &Setup, delegate: bool) -> (Bot, FilteringProxy, String) {
    let proxy = FilteringProxy::start(&setup.stack.homeserver_url, 502, "{}").await;
    let mut env = setup.env();
    env.retain(|(name, _)| *name != "HOMESERVER_URL");
    env.push(("HOMESERVER_URL", proxy.url.clone()));
    if delegate {
        env.push(("DELEGATE_DELAYED_LEAVE", "1".into()));
    }
    let (bot, device) = setup.start_in_the_call(&env).await;
    (bot, proxy, device)
}

async fn is_member(setup: &Setup, device: &str) -> bool {
    setup.membership(device).await.get("application").is_some()
}

#[tokio::test]
async fn a_delegating_program_cut_off_from_its_homeserver_stays_while_its_media_flows() {
    // Delegating: the service restarts the delayed leave while the program is on LiveKit.
    let setup = Setup::new("delegating").await;
    let (mut bot, proxy, device) = in_the_call(&setup, true).await;
    bot.wait_line(WAIT, |l| l.contains("delayed leave handed to the authorization service")).await;
    proxy.block(&["/"]);
    let cut = Instant::now();
    while cut.elapsed() < CUT {
        assert!(
            is_member(&setup, &device).await,
            "the delegating program's membership went {:?} into the cut:\n{}",
            cut.elapsed(),
            bot.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        bot.logged("restarting the delayed leave keeps failing"),
        "the program's own restarts failed during the cut"
    );
    proxy.block(&[]);
    // Its own restarts of the same delayed leave go through again; it leaves cleanly.
    tokio::time::sleep(Duration::from_secs(3)).await;
    bot.signal(Signal::SIGTERM);
    assert_eq!(bot.wait_exit(Duration::from_secs(10)).await.code(), Some(0), "{}", bot.log());
    assert!(
        !bot.logged("scheduling a new one and re-joining"),
        "the delayed leave was never lost:\n{}",
        bot.log()
    );
    setup.wait_membership_gone(&device, Duration::from_secs(5)).await;

    // Not delegating: the homeserver sends the leave after the delay; the program re-joins
    // once it can reach the homeserver again.
    let setup = Setup::new("undelegated").await;
    let (mut bot, proxy, device) = in_the_call(&setup, false).await;
    proxy.block(&["/"]);
    let gone = setup.wait_membership_gone(&device, CUT).await;
    eprintln!("without delegation the membership went {gone:?} into the cut");
    proxy.block(&[]);
    let back = Instant::now();
    while !is_member(&setup, &device).await {
        assert!(back.elapsed() < WAIT, "the program did not re-join:\n{}", bot.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bot.signal(Signal::SIGTERM);
    assert_eq!(bot.wait_exit(Duration::from_secs(10)).await.code(), Some(0), "{}", bot.log());
}
