//! Password hashing: Argon2id over the peppered MD5 the clients send.
mod threads;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, KeyId, Params, ParamsBuilder, PasswordHash, PasswordVerifier, Version,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::threads::{IDLE_BEFORE_RELEASE, Job, hash_with_thread_memory, start_workers};
use super::Keys;
use crate::{
    domain::Md5PasswordHex,
    error::{CoreError, CoreResult},
};

/// Argon2's memory cost, in KiB (one block each): OWASP's minimum.
const ARGON2_KIB: u32 = 19 * 1024;
/// One hashing thread's Argon2 area.
const ARGON2_AREA_BYTES: usize = ARGON2_KIB as usize * 1024;

/// Argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane),
/// computed on the blocking pool behind a bounded queue: beyond
/// `max_queued` waiting requests the caller gets `ServerBusy` at once
/// instead of piling up memory.
///
/// The permits travel into the hashing job and are released when the hash
/// is finished, not when the request is: a client that gives up mid-hash
/// cannot start more hashes than `max_concurrent`, however many requests it
/// cancels. The jobs run on `max_concurrent` threads of their own, each
/// reusing one Argon2 memory area while it has work and giving it back
/// after [`IDLE_BEFORE_RELEASE`] without: spread over tokio's blocking
/// threads, with the memory allocated and freed per hash, the allocator
/// kept it (254 MiB resident after 2,000 abandoned confirms, release build;
/// then 145 MiB, of which about 90 MiB are the abandoned requests
/// themselves).
#[derive(Clone)]
pub struct PasswordHashing {
    keys: Arc<Keys>,
    jobs: flume::Sender<Job>,
    running: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    max_concurrent: usize,
    max_queued: usize,
    hashing_now: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
    areas_held: Arc<AtomicUsize>,
}

impl PasswordHashing {
    pub fn new(keys: Arc<Keys>, max_concurrent: usize, max_queued: usize) -> Self {
        Self::releasing_after(keys, max_concurrent, max_queued, IDLE_BEFORE_RELEASE)
    }

    /// [`Self::new`] with the idle spell after which a hashing thread gives
    /// its Argon2 area back.
    fn releasing_after(
        keys: Arc<Keys>,
        max_concurrent: usize,
        max_queued: usize,
        idle: Duration,
    ) -> Self {
        let areas_held = Arc::new(AtomicUsize::new(0));
        Self {
            keys,
            jobs: start_workers(max_concurrent, idle, Arc::clone(&areas_held)),
            running: Arc::new(Semaphore::new(max_concurrent)),
            waiting: Arc::new(Semaphore::new(max_concurrent + max_queued)),
            max_concurrent,
            max_queued,
            hashing_now: Arc::default(),
            most_at_once: Arc::default(),
            areas_held,
        }
    }

    /// Bytes of Argon2 memory the hashing threads hold now.
    pub fn memory_held(&self) -> usize {
        self.areas_held.load(Ordering::Relaxed) * ARGON2_AREA_BYTES
    }

    /// Hashes being computed now, on behalf of live or abandoned requests.
    pub fn in_progress(&self) -> usize {
        self.hashing_now.load(Ordering::Relaxed)
    }

    /// The most hashes ever computed at once by this process.
    pub fn most_at_once(&self) -> usize {
        self.most_at_once.load(Ordering::Relaxed)
    }

    /// Requests waiting for a hashing slot now (the queue depth).
    pub fn waiting(&self) -> usize {
        let admitted = (self.max_concurrent + self.max_queued) - self.waiting.available_permits();
        let running = self.max_concurrent - self.running.available_permits();
        admitted.saturating_sub(running)
    }

    #[allow(
        clippy::expect_used,
        reason = "constant parameters within Argon2's bounds"
    )]
    fn argon2(pepper_id: u8) -> Argon2<'static> {
        let params = ParamsBuilder::new()
            .m_cost(ARGON2_KIB)
            .t_cost(2)
            .p_cost(1)
            .keyid(KeyId::new(&[pepper_id]).expect("one byte is a valid key id"))
            .build()
            .expect("valid Argon2 parameters");
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// A place in the hashing queue, or `ServerBusy` at once when it is
    /// full. A request that will hash takes it before any other work, so
    /// one that would be refused costs no database work and answers at
    /// once, and one that was admitted is not refused later.
    pub fn admit(&self) -> CoreResult<HashingTicket<'_>> {
        let queued =
            self.waiting
                .clone()
                .try_acquire_owned()
                .map_err(|_| CoreError::ServerBusy {
                    retry_after_seconds: 1,
                })?;
        Ok(HashingTicket {
            hashing: self,
            queued,
        })
    }

    /// Takes a place in the queue and hashes; see [`HashingTicket::hash`].
    /// The service admits first and hashes later (confirm); tests do both.
    #[cfg(test)]
    pub async fn hash(&self, md5: &Md5PasswordHex) -> CoreResult<String> {
        self.admit()?.hash(md5).await
    }

    pub async fn verify(&self, md5: &Md5PasswordHex, phc: String) -> CoreResult<bool> {
        let parsed = PasswordHash::new(&phc)
            .map_err(|e| anyhow::anyhow!("Failed to parse stored password hash: {e}"))?;
        // Hashes from before pepper ids carry none: they used pepper 1.
        let pepper_id = Params::try_from(&parsed)
            .ok()
            .and_then(|params| params.keyid().first().copied())
            .unwrap_or(1);
        let peppered = self.keys.pepper_by_id(pepper_id, md5).with_context(|| {
            format!("password hash made with pepper {pepper_id}, which is not configured")
        })?;
        self.run(move || {
            let parsed = PasswordHash::new(&phc)
                .map_err(|e| anyhow::anyhow!("Failed to parse stored password hash: {e}"))?;
            Ok(Argon2::default()
                .verify_password(&peppered, &parsed)
                .is_ok())
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> CoreResult<T> {
        self.admit()?
            .run(work, std::future::pending())
            .await?
            .context("the hashing wait gave up though nothing could abandon it")
            .map_err(CoreError::from)
    }
}

/// A request's place in the hashing queue, from [`PasswordHashing::admit`];
/// dropped unused, it frees the place.
pub struct HashingTicket<'a> {
    hashing: &'a PasswordHashing,
    queued: OwnedSemaphorePermit,
}

impl HashingTicket<'_> {
    /// [`Self::hash_unless`] with nothing to abandon it; tests only, since
    /// the service hashes for a client that may leave.
    #[cfg(test)]
    pub async fn hash(self, md5: &Md5PasswordHex) -> CoreResult<String> {
        self.hash_unless(md5, std::future::pending())
            .await?
            .context("the hashing wait gave up though nothing could abandon it")
            .map_err(CoreError::from)
    }

    /// The hash records which pepper it was made with (Argon2's `keyid`),
    /// so a new pepper can be introduced without breaking older hashes.
    /// Unless `abandoned` completes while the request waits for a hashing
    /// slot: then the place is given back and there is no hash (`None`).
    /// Once the hash has started it runs to its end either way.
    pub async fn hash_unless(
        self,
        md5: &Md5PasswordHex,
        abandoned: impl Future<Output = ()>,
    ) -> CoreResult<Option<String>> {
        let (pepper_id, peppered) = self.hashing.keys.pepper_current(md5);
        let areas_held = Arc::clone(&self.hashing.areas_held);
        self.run(
            move || {
                hash_with_thread_memory(&PasswordHashing::argon2(pepper_id), &peppered, &areas_held)
            },
            abandoned,
        )
        .await
    }

    /// The work's result, or `None` when `abandoned` completed first.
    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
        abandoned: impl Future<Output = ()>,
    ) -> CoreResult<Option<T>> {
        let Self { hashing, queued } = self;
        let running = tokio::select! {
            biased;
            () = abandoned => return Ok(None),
            slot = hashing.running.clone().acquire_owned() => {
                slot.context("Failed to wait for a hashing slot")?
            }
        };
        let hashing_now = Arc::clone(&hashing.hashing_now);
        let most_at_once = Arc::clone(&hashing.most_at_once);
        let (done, outcome) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let now = hashing_now.fetch_add(1, Ordering::Relaxed) + 1;
            most_at_once.fetch_max(now, Ordering::Relaxed);
            let result = work();
            hashing_now.fetch_sub(1, Ordering::Relaxed);
            // Only now may another hash start.
            drop((running, queued));
            // The request may be gone; the work is done either way.
            let _ = done.send(result);
        });
        hashing
            .jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the password-hashing threads have stopped"))?;
        let result = outcome
            .await
            .context("a password-hashing thread dropped its job")??;
        Ok(Some(result))
    }
}

#[cfg(test)]
mod tests {
    use super::{threads::HASHING_NICE_STEPS, *};

    fn keys() -> Arc<Keys> {
        Arc::new(Keys::for_tests("token-key", "pepper"))
    }

    #[tokio::test]
    async fn hashing_beyond_the_queue_is_refused_not_buffered() {
        let hashing = PasswordHashing::new(keys(), 1, 1);
        let md5 = Md5PasswordHex::parse(&"A".repeat(32)).unwrap();
        let attempts = (0..6).map(|_| hashing.hash(&md5));
        let results = futures::future::join_all(attempts).await;
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(CoreError::ServerBusy { .. })))
            .count();
        let hashed = results.iter().filter(|r| r.is_ok()).count();
        // One running plus one queued get through; the rest are told to retry.
        assert_eq!((hashed, busy), (2, 4));
    }

    #[tokio::test]
    async fn a_hashing_thread_gives_its_area_back_after_an_idle_spell() {
        let idle = Duration::from_millis(300);
        let hashing = PasswordHashing::releasing_after(keys(), 1, 1, idle);
        let md5 = Md5PasswordHex::parse(&"E".repeat(32)).unwrap();
        assert_eq!(hashing.memory_held(), 0, "no area before the first hash");
        // Hashes closer together than the idle spell keep the area.
        for _ in 0..3 {
            hashing.hash(&md5).await.unwrap();
            assert_eq!(hashing.memory_held(), ARGON2_AREA_BYTES);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while hashing.memory_held() != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the area was never given back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The next hash takes a fresh area and makes a hash that verifies.
        let phc = hashing.hash(&md5).await.unwrap();
        assert_eq!(hashing.memory_held(), ARGON2_AREA_BYTES);
        assert!(hashing.verify(&md5, phc).await.unwrap());
    }

    #[tokio::test]
    async fn an_admitted_request_keeps_its_place_until_it_hashes_or_drops_it() {
        let hashing = PasswordHashing::new(keys(), 1, 1);
        let md5 = Md5PasswordHex::parse(&"D".repeat(32)).unwrap();
        let first = hashing.admit().unwrap();
        let second = hashing.admit().unwrap();
        assert!(matches!(
            hashing.admit().map(|_| ()),
            Err(CoreError::ServerBusy {
                retry_after_seconds: 1
            })
        ));
        assert!(matches!(
            hashing.hash(&md5).await,
            Err(CoreError::ServerBusy { .. })
        ));
        drop(second);
        assert!(first.hash(&md5).await.is_ok(), "admitted means hashed");
        assert!(
            hashing.hash(&md5).await.is_ok(),
            "both places are free again"
        );
    }

    #[tokio::test]
    async fn a_request_abandoned_while_it_waits_gives_its_place_back() {
        let hashing = PasswordHashing::new(keys(), 1, 0);
        let md5 = Md5PasswordHex::parse(&"F".repeat(32)).unwrap();
        // Another request's hash holds the only slot.
        let slot = hashing.running.clone().try_acquire_owned().unwrap();
        let (client_leaves, gone) = tokio::sync::oneshot::channel::<()>();
        let mut waiting = std::pin::pin!(hashing.admit().unwrap().hash_unless(&md5, async {
            let _ = gone.await;
        }));
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        assert!(hashing.admit().is_err(), "the one place is taken");
        drop(client_leaves);
        assert!(matches!(waiting.await, Ok(None)));
        assert_eq!(hashing.in_progress(), 0, "nothing was hashed for it");
        let next = hashing.admit().expect("the place is free again");
        drop(slot);
        assert!(next.hash(&md5).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_requests_do_not_start_more_hashes_than_the_bound() {
        let hashing = PasswordHashing::new(keys(), 2, 8);
        let md5 = Md5PasswordHex::parse(&"C".repeat(32)).unwrap();
        let cut_off = (0..2_000).map(|_| {
            let hashing = hashing.clone();
            let md5 = md5.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(2), hashing.hash(&md5)).await
            })
        });
        let outcomes = futures::future::join_all(cut_off).await;
        assert!(outcomes.iter().all(|o| o.is_ok()), "no task panicked");
        assert!(
            hashing.most_at_once() <= 2,
            "{} hashes ran at once",
            hashing.most_at_once()
        );
        // The abandoned work drains, and the next caller is served.
        for _ in 0..1_000 {
            if hashing.in_progress() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(hashing.in_progress(), 0, "abandoned hashes finish");
        let next = hashing.hash(&md5).await;
        assert!(next.is_ok(), "{next:?}");
        assert!(hashing.most_at_once() >= 1);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_below_the_request_threads() {
        let this_thread = rustix::process::getpriority_process(None).unwrap();
        let hashing = PasswordHashing::new(keys(), 2, 0);
        let on_hashing_threads = futures::future::join_all(
            (0..2).map(|_| hashing.run(|| Ok(rustix::process::getpriority_process(None)?))),
        )
        .await;
        let expected = (this_thread + HASHING_NICE_STEPS).min(19);
        for nice in on_hashing_threads {
            assert_eq!(nice.unwrap(), expected);
        }
        assert_eq!(
            rustix::process::getpriority_process(None).unwrap(),
            this_thread,
            "other threads keep their priority"
        );
    }

    #[tokio::test]
    async fn pepper_changes_the_hash() {
        let md5 = Md5PasswordHex::parse(&"B".repeat(32)).unwrap();
        let phc = PasswordHashing::new(keys(), 1, 1).hash(&md5).await.unwrap();
        let other_pepper = Arc::new(Keys::for_tests("token-key", "another"));
        assert!(
            PasswordHashing::new(keys(), 1, 1)
                .verify(&md5, phc.clone())
                .await
                .unwrap()
        );
        assert!(
            !PasswordHashing::new(other_pepper, 1, 1)
                .verify(&md5, phc)
                .await
                .unwrap()
        );
    }
}
