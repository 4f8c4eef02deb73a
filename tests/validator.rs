//! A whole validator round on loopback with the embedded chain: one validator, three miners —
//! one honest (its images come from a real endpoint with the tiny SD 1.5 model), one answering
//! with another seed's image, one too slow — judged by a real reward service. The scores, the
//! reasons and the weights on chain are asserted, and the state survives a reload.
#![cfg(feature = "local-infer")]

mod common;

use nicheimage_node::reward::judge::Verdict;
use nicheimage_node::runtime::event::{
    RewardReason, ServiceVerdict, Unanswered, WeightsState, WeightsStatus,
};
use std::collections::BTreeMap;

use common::subnet::{Behaviour, Subnet};
use nicheimage_bittensor::chain::Chain;
use nicheimage_bittensor::dendrite::Dendrite;
use nicheimage_node::validator::Dice;
use nicheimage_node::validator::scores::MinerBook;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_scores_honest_wrong_and_slow_miners_and_sets_weights() {
    let subnet = Subnet::start(
        &[Behaviour::Honest, Behaviour::WrongSeed, Behaviour::Slow(6)],
        4.0,
    )
    .await;
    let state_path = subnet.dir.path().join("validator-state.json");
    let validator = subnet.validator(true);
    let dendrite = Dendrite::new(subnet.validator_key.clone()).unwrap();
    let outcomes = validator
        .forward(&dendrite, &mut Dice::new(7))
        .await
        .unwrap();
    // The judged images come back small, with their verdicts, for the console's gallery.
    assert_eq!(outcomes.gallery.len(), 2, "honest and wrong-seed answered");
    let passed: Vec<bool> = outcomes.gallery.iter().map(|g| g.reward > 0.0).collect();
    assert_eq!(passed.iter().filter(|p| **p).count(), 1, "{passed:?}");
    assert!(
        outcomes
            .gallery
            .iter()
            .all(|g| g.thumbnail.width == 32 && g.thumbnail.height == 32)
    );
    let outcomes = outcomes.outcomes;
    let by_uid: BTreeMap<u16, _> = outcomes.iter().map(|o| (o.uid, o)).collect();
    assert_eq!(by_uid.len(), 3, "{outcomes:#?}");
    let honest = by_uid[&1].reward.unwrap();
    assert!(honest > 0.9 && honest <= 1.0, "{outcomes:#?}");
    // Our reward service sends its verdicts as data: they arrive typed, with the distance.
    assert!(
        matches!(
            &by_uid[&1].reason,
            RewardReason::Judged {
                verdict: ServiceVerdict::Verdict(Verdict::Match { .. }),
                ..
            }
        ) && by_uid[&1].reason.distance().is_some_and(|d| d <= 6),
        "{outcomes:#?}"
    );
    assert!(
        by_uid[&1].reason.to_string().contains("hash distance"),
        "{outcomes:#?}"
    );
    assert_eq!(by_uid[&2].reward, Some(0.0), "{outcomes:#?}");
    assert!(
        matches!(
            &by_uid[&2].reason,
            RewardReason::Judged {
                verdict: ServiceVerdict::Verdict(Verdict::Mismatch { .. }),
                ..
            }
        ),
        "{outcomes:#?}"
    );
    assert_eq!(by_uid[&3].reward, Some(0.0));
    assert!(
        matches!(
            by_uid[&3].reason,
            RewardReason::Unanswered(Unanswered::Timeout { .. })
        ),
        "{outcomes:#?}"
    );
    assert!(
        by_uid[&3].reason.to_string().starts_with("timeout"),
        "{outcomes:#?}"
    );

    // The same round signed with bittensor 11's btauth/1: the same verdicts.
    let btauth = Dendrite::new(subnet.validator_key.clone())
        .unwrap()
        .with_scheme(Some(nicheimage_bittensor::dendrite::Scheme::BtAuth));
    let again = validator.forward(&btauth, &mut Dice::new(7)).await.unwrap();
    let again: BTreeMap<u16, _> = again.outcomes.iter().map(|o| (o.uid, o.clone())).collect();
    assert!(again[&1].reward.unwrap() > 0.9, "{again:#?}");
    assert_eq!(again[&2].reward, Some(0.0), "{again:#?}");
    assert!(
        matches!(
            again[&3].reason,
            RewardReason::Unanswered(Unanswered::Timeout { .. })
        ),
        "{again:#?}"
    );

    let done = validator.set_weights().await.unwrap();
    assert!(matches!(done, WeightsStatus::Set { uids: 1, .. }), "{done}");
    assert!(done.to_string().contains("set at block"), "{done}");
    let history = subnet.chain.weight_history();
    assert_eq!(history.len(), 1);
    // Only the honest miner has a score: all the weight is its.
    assert_eq!(
        (
            history[0].uid,
            history[0].uids.clone(),
            history[0].weights.clone()
        ),
        (0, vec![1], vec![65535])
    );
    // The rate limit is 0 here: the next eligible block is the one just used.
    let next = validator.next_weights_block().await.unwrap().unwrap();
    assert!(next >= 1000, "{next}");

    // Commit-reveal on: the validator commits, keeps the salt across a restart, reveals in the
    // window.
    subnet
        .chain
        .configure(23, |p| {
            p.commit_reveal = true;
            p.commit_reveal_mode = nicheimage_bittensor::chain::embedded::CommitRevealMode::Hash;
        })
        .unwrap();
    let done = validator.set_weights().await.unwrap();
    assert!(matches!(done, WeightsStatus::Committed { .. }), "{done}");
    assert!(done.to_string().starts_with("committed at block"), "{done}");
    let commits_path = subnet.dir.path().join("weight-commits.json");
    let kept = nicheimage_bittensor::chain::commit::load_pending(&commits_path).unwrap();
    assert_eq!(kept.len(), 1);
    let again = validator.set_weights().await.unwrap();
    assert_eq!(again, done, "one commit at a time, waiting for its window");
    let restarted = subnet.validator(true);
    *restarted.shared.book() = validator.shared.book().clone();
    let now = subnet.chain.block().await.unwrap();
    subnet.chain.advance(kept[0].first_reveal_block - now);
    let done = restarted.set_weights().await.unwrap();
    assert!(
        matches!(done, WeightsStatus::Revealed { uids: 1, .. })
            && done.to_string().contains("revealed the commit of block"),
        "{done}"
    );
    assert_eq!(subnet.chain.weight_history().len(), 2);
    assert!(
        nicheimage_bittensor::chain::commit::load_pending(&commits_path)
            .unwrap()
            .is_empty()
    );

    // Commit-reveal v4, today's default: the validator commits timelocked, reporting the epoch
    // state and clock its drand round came from. Blocks are skipped here faster than the
    // beacon's rounds come, so the pulse reaches the chain after the reveal epoch: the chain
    // drops the commit, and the validator says so with the reason.
    subnet
        .chain
        .configure(23, |p| {
            p.commit_reveal_mode =
                nicheimage_bittensor::chain::embedded::CommitRevealMode::Timelocked;
        })
        .unwrap();
    let done = validator.set_weights().await.unwrap();
    assert!(
        matches!(done, WeightsStatus::Timelocked { .. })
            && done.to_string().contains("timelocked to drand round"),
        "{done}"
    );
    let kept = serde_json::to_value(validator.kept_commits()).unwrap();
    let c = &kept[0];
    assert_eq!(c["kind"], "timelocked", "{kept}");
    assert_eq!(c["epoch_state"]["rule"], "stateful", "{kept}");
    assert_eq!(
        c["reveal_epoch"].as_u64().unwrap(),
        c["commit_epoch"].as_u64().unwrap() + 1,
        "{kept}"
    );
    assert!(c["committed_at"].as_f64().unwrap() > 1.7e9, "{kept}");
    let first = c["first_reveal_block"].as_u64().unwrap();
    let again = validator.set_weights().await.unwrap();
    assert!(
        matches!(again, WeightsStatus::Timelocked { .. })
            && again.to_string().starts_with("committed at block"),
        "waiting: {again}"
    );
    let now = subnet.chain.block().await.unwrap();
    subnet.chain.advance(first + 361 - now);
    let dropped = validator.set_weights().await.unwrap();
    assert!(
        matches!(dropped, WeightsStatus::Dropped { .. })
            && dropped.state() == WeightsState::Failed
            && dropped.to_string().contains("dropped by the chain"),
        "{dropped}"
    );
    let on_chain = subnet.chain.dropped_commits();
    assert_eq!(on_chain.len(), 1, "{on_chain:?}");
    assert!(
        on_chain[0].reason.contains("before the pulse"),
        "{on_chain:?}"
    );
    assert_eq!(subnet.chain.weight_history().len(), 2, "nothing applied");

    let book = {
        let mut book = validator.shared.book();
        book.step += 1;
        book.clone()
    };
    book.save(&state_path).unwrap();
    let (reloaded, note) = MinerBook::load(&state_path);
    assert_eq!((reloaded, note), (book, None));
    subnet.stop().await;
}
