//! How the program leaves: SIGINT and SIGTERM remove its membership and its LiveKit participant
//! and end it within 3 s; after SIGKILL the homeserver's delayed leave removes the membership by
//! itself (no ghost) and LiveKit drops the participant. Needs `cargo xtask devstack up`.

mod common;

use std::time::{Duration, Instant};

use common::{Bot, Setup};
use nix::sys::signal::Signal;

/// Starts the program (always in the call, red) and waits until it is in the call and on
/// LiveKit; its device.
async fn in_the_call(setup: &Setup) -> (Bot, String) {
    setup.start_in_the_call(&setup.env()).await
}

#[tokio::test]
async fn sigterm_and_sigint_leave_the_call_and_livekit_quickly() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let setup = Setup::new("term").await;
        let (mut bot, device) = in_the_call(&setup).await;
        let stopping = Instant::now();
        bot.signal(signal);
        let status = bot.wait_exit(Duration::from_secs(5)).await;
        let took = stopping.elapsed();
        assert_eq!(status.code(), Some(0), "{}", bot.log());
        assert!(took < Duration::from_secs(3), "{signal} took {took:?}");
        // Gone right away, not after the delayed leave's 10 s.
        let gone = setup.wait_membership_gone(&device, Duration::from_secs(2)).await;
        setup.wait_participants(Duration::from_secs(3), |p| p.is_empty()).await;
        eprintln!("{signal}: exit after {took:?}, membership gone {gone:?} later");
    }
}

#[tokio::test]
async fn sigkill_leaves_no_ghost() {
    let setup = Setup::new("kill").await;
    let (mut bot, device) = in_the_call(&setup).await;
    let killed = Instant::now();
    bot.signal(Signal::SIGKILL);
    bot.wait_exit(Duration::from_secs(5)).await;
    let gone = setup.wait_membership_gone(&device, Duration::from_secs(20)).await;
    eprintln!("SIGKILL: the membership left {gone:?} after the kill (delayed leave)");
    setup.wait_participants(Duration::from_secs(60), |p| p.is_empty()).await;
    eprintln!("SIGKILL: LiveKit dropped the participant {:?} after the kill", killed.elapsed());
}
