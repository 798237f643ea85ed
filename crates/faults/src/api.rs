//! The server's REST API as the harness uses it: triggers that record what they got, job and
//! robot look-ups, waiting for a condition.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use rpa_testkit::{HttpClient, Trigger as TriggerDoc};
use serde_json::{Value, json};

use crate::checker::{Answer, DUE_FIELD, KEY_FIELD, ServerJob, Trigger};
use crate::clock::{now_us, rfc3339};

/// A robot the triggers name.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub address: String,
    /// Any free robot of this pool instead of `address`.
    pub pool: Option<String>,
}

impl Target {
    /// One robot, by name and address.
    pub fn robot(name: &str, address: &str) -> Target {
        Target {
            name: name.to_owned(),
            address: address.to_owned(),
            pool: None,
        }
    }

    /// Any free robot of the pool, named `pool`.
    pub fn pool(pool: &str) -> Target {
        Target {
            name: String::new(),
            address: String::new(),
            pool: Some(pool.to_owned()),
        }
    }
}

/// The trigger document for one job: the package names the trigger (`fault_key`, also its
/// `package_name`, so its package file can be told apart) and carries its due moment.
pub fn trigger_body(key: &str, robot: &Target, due_us: i64, padding: usize) -> Value {
    let mut body = TriggerDoc::new(key, &format!("faults/{key}.std"));
    body = match &robot.pool {
        Some(pool) => body.pool(&robot.name, pool),
        None => body.robot(&robot.name, &robot.address),
    };
    let mut body = body
        .package_field(KEY_FIELD, key)
        .package_field(DUE_FIELD, due_us)
        .schedule(json!({"at": rfc3339(due_us)}));
    if padding > 0 {
        body = body.package_field("padding", "x".repeat(padding));
    }
    body.to_json()
}

/// Posts one trigger and records what it got. `due_us` must be on the server's timeline and
/// whole milliseconds (the `at` sent has millisecond precision).
pub async fn trigger(
    client: &mut HttpClient,
    key: &str,
    robot: &Target,
    due_us: i64,
    padding: usize,
) -> Trigger {
    let body = trigger_body(key, robot, due_us, padding);
    let sent_us = now_us();
    let result = client.post("/api/jobs", &body).await;
    let answered_us = now_us();
    let answer = match result {
        Ok(answer) if answer.is_success() => {
            match answer.json().get("id").and_then(Value::as_i64) {
                Some(job_id) => Answer::Accepted {
                    status: answer.status,
                    job_id,
                },
                None => Answer::Refused {
                    status: answer.status,
                    code: Some("2xx without a job id".to_owned()),
                    problem: false,
                    retry_after: false,
                },
            }
        }
        Ok(answer) => Answer::Refused {
            status: answer.status,
            code: answer
                .json()
                .get("code")
                .and_then(Value::as_str)
                .map(str::to_owned),
            problem: answer.is_problem(),
            retry_after: answer.header(hyper::header::RETRY_AFTER).is_some(),
        },
        Err(error) => Answer::NoAnswer {
            error: format!("{:#}", anyhow::Error::from(error)),
        },
    };
    Trigger {
        key: key.to_owned(),
        robot: robot.address.clone(),
        due_us,
        sent_us,
        answered_us,
        answer,
    }
}

/// Read-only API calls on a fresh client each (they run between faults).
#[derive(Debug, Clone, Copy)]
pub struct Api {
    pub addr: SocketAddr,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        Api { addr }
    }

    fn client(&self) -> HttpClient {
        HttpClient::new(self.addr).timeout(Duration::from_secs(20))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let answer = self.client().get(path).await?;
        Ok((answer.status, answer.json()))
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let answer = self.client().post(path, body).await?;
        Ok((answer.status, answer.json()))
    }

    /// `PUT /api/robots/{address}/pools`: the robot's pools become `pools`.
    pub async fn set_pools(&self, address: &str, pools: &[&str]) -> Result<()> {
        let path = format!("/api/robots/{address}/pools");
        let body = hyper::body::Bytes::from(json!({ "pools": pools }).to_string());
        let answer = self
            .client()
            .request(hyper::Method::PUT, &path, Some(body), &[])
            .await?;
        if answer.status != 200 {
            anyhow::bail!("PUT {path}: {} {}", answer.status, answer.json());
        }
        Ok(())
    }

    pub async fn delete(&self, path: &str) -> Result<(u16, Value)> {
        let answer = self.client().delete(path).await?;
        Ok((answer.status, answer.json()))
    }

    /// `GET /api/jobs/{id}` with its events; `None` for a 404.
    pub async fn job(&self, id: i64) -> Result<Option<Value>> {
        let (status, body) = self.get(&format!("/api/jobs/{id}")).await?;
        Ok((status == 200).then_some(body))
    }

    /// Every job, through the keyset pages of `GET /api/jobs`.
    pub async fn all_jobs(&self) -> Result<HashMap<i64, ServerJob>> {
        self.jobs_from(i64::MIN).await
    }

    /// The jobs with an id of at least `min_id` (pages are newest first: it stops below it).
    pub async fn jobs_from(&self, min_id: i64) -> Result<HashMap<i64, ServerJob>> {
        let mut client = self.client();
        let mut jobs = HashMap::new();
        let mut after: Option<i64> = None;
        loop {
            let path = match after {
                Some(after) => format!("/api/jobs?limit=500&after={after}"),
                None => "/api/jobs?limit=500".to_owned(),
            };
            let answer = client.get(&path).await?;
            if answer.status != 200 {
                anyhow::bail!("GET {path}: {} {}", answer.status, answer.json());
            }
            let page = answer.json();
            let items = page
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for item in &items {
                if let Some(job) = ServerJob::from_view(item) {
                    jobs.insert(job.id, job);
                }
            }
            match page.get("next_after").and_then(Value::as_i64) {
                Some(next) if !items.is_empty() && Some(next) != after && next > min_id => {
                    after = Some(next)
                }
                _ => break,
            }
        }
        Ok(jobs)
    }

    /// Whether the API shows the robot online; `None` when it is unknown.
    pub async fn robot_online(&self, address: &str) -> Result<Option<bool>> {
        let (status, body) = self.get(&format!("/api/robots/{address}")).await?;
        Ok((status == 200).then(|| body.get("online").and_then(Value::as_bool) == Some(true)))
    }

    /// Waits until the robot is online (or offline) as the API shows it.
    pub async fn wait_online(&self, address: &str, online: bool, limit: Duration) -> Result<bool> {
        let address = address.to_owned();
        wait_for(limit, Duration::from_millis(20), || {
            let address = address.clone();
            async move { Ok(self.robot_online(&address).await.ok().flatten() == Some(online)) }
        })
        .await
    }

    /// Robots online now.
    pub async fn online_robots(&self) -> Result<Vec<String>> {
        let (_, body) = self.get("/api/robots?online=true&limit=500").await?;
        Ok(body
            .get("items")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|r| r.get("robot_address").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A counter or gauge of `GET /metrics` (the first sample of that name).
    pub async fn metric(&self, name: &str) -> Result<Option<f64>> {
        let answer = self.client().get("/metrics").await?;
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        Ok(text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse().ok()).flatten()
            }))
    }
}

/// Polls `check` every `every` until it says yes or `limit` passes; whether it said yes.
pub async fn wait_for<F, Fut>(limit: Duration, every: Duration, mut check: F) -> Result<bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(every).await;
    }
}
