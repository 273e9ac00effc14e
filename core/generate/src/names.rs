//! Names of outlets and persons in English, Spanish and Chinese, with the
//! commas, quotes and apostrophes real customer lists hold.

use rand::RngExt;
use rand_pcg::Pcg64Mcg;

const EN_LAST: &[&str] = &[
    "Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Moore", "Clark", "Walker", "Hall",
    "Young", "King", "Wright", "Green", "Baker", "Adams", "Nelson", "Hill", "O'Brien", "O'Neill",
    "McCarthy", "Murphy", "Evans", "Hughes",
];
const EN_FIRST_F: &[&str] = &[
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Susan",
    "Sarah",
    "Karen",
    "Zoë",
    "Chloé",
    "Emma",
    "Olivia",
];
const EN_FIRST_M: &[&str] = &[
    "James", "John", "Robert", "Michael", "William", "David", "Thomas", "Charles", "Seán",
    "Daniel", "Mark", "Paul",
];
const ES_LAST: &[&str] = &[
    "García",
    "Fernández",
    "González",
    "Rodríguez",
    "López",
    "Martínez",
    "Sánchez",
    "Pérez",
    "Gómez",
    "Jiménez",
    "Ruiz",
    "Hernández",
    "Díaz",
    "Moreno",
    "Muñoz",
    "Álvarez",
    "Núñez",
    "Peña",
    "Ibáñez",
    "Castaño",
];
const ES_FIRST_F: &[&str] = &[
    "María", "Carmen", "Lucía", "Sofía", "Inés", "Begoña", "Ángela", "Rocío",
];
const ES_FIRST_M: &[&str] = &[
    "José", "Juan", "Antonio", "Manuel", "Javier", "Jesús", "Raúl", "Íñigo",
];
const ZH_LAST: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "林",
];
const ZH_GIVEN_F: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "秀英", "玲", "晓燕", "子涵", "婷",
];
const ZH_GIVEN_M: &[&str] = &[
    "伟", "强", "磊", "军", "洋", "杰", "涛", "明", "建国", "浩然",
];
const EN_SHOP: &[&str] = &[
    "Corner", "Sunrise", "Lucky", "Golden", "Central", "Station", "Harbour", "Park", "Market",
    "Plaza",
];
const ES_SHOP: &[&str] = &[
    "El Sol",
    "La Esquina",
    "La Plaza",
    "San José",
    "El Puerto",
    "Los Álamos",
    "Peñalara",
];
const ZH_SHOP: &[&str] = &[
    "好运", "鑫隆", "金源", "百姓", "顺发", "华联", "永盛", "福满", "兴旺", "如意",
];
const ZH_PLACE: &[&str] = &["东门", "西街", "南站", "北城", "中心", "新区"];
const NICK: &[&str] = &["Bud", "Sunny", "Red", "Ace", "Doc", "Kit"];

fn one<'a>(rng: &mut Pcg64Mcg, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// The name of a tobacco retail outlet.
pub(crate) fn outlet(rng: &mut Pcg64Mcg) -> String {
    let u: f64 = rng.random();
    let v: f64 = rng.random();
    if u < 0.52 {
        match v {
            v if v < 0.25 => format!("{}'s Corner Store", one(rng, EN_LAST)),
            v if v < 0.45 => format!("{} News & Tobacco", one(rng, EN_LAST)),
            v if v < 0.62 => format!("{} Mart", one(rng, EN_SHOP)),
            v if v < 0.76 => format!("{} Tobacco Kiosk", one(rng, EN_SHOP)),
            v if v < 0.86 => format!("{} & Sons, Ltd.", one(rng, EN_LAST)),
            v if v < 0.93 => format!("{}, {} & Co.", one(rng, EN_LAST), one(rng, EN_LAST)),
            v if v < 0.97 => format!("The \"{}\" Shop", one(rng, EN_SHOP)),
            _ => format!("{} \"Quick Stop\"", one(rng, EN_LAST)),
        }
    } else if u < 0.75 {
        match v {
            v if v < 0.3 => format!("Estanco {}", one(rng, ES_LAST)),
            v if v < 0.5 => format!("Tabaquería {}", one(rng, ES_LAST)),
            v if v < 0.65 => format!("Quiosco {}", one(rng, ES_SHOP)),
            v if v < 0.77 => format!(
                "Estanco Nº {} {}",
                rng.random_range(1..=180),
                one(rng, ES_LAST)
            ),
            v if v < 0.9 => format!("Tabacos {}, S.L.", one(rng, ES_LAST)),
            _ => format!("Quiosco \"{}\"", one(rng, ES_SHOP)),
        }
    } else {
        match v {
            v if v < 0.3 => format!("{}记烟酒店", one(rng, ZH_LAST)),
            v if v < 0.55 => format!("{}便利店", one(rng, ZH_SHOP)),
            v if v < 0.75 => format!("{}烟酒商行", one(rng, ZH_SHOP)),
            v if v < 0.88 => format!("{}氏烟草专卖", one(rng, ZH_LAST)),
            _ => format!("{}便利店（{}店）", one(rng, ZH_SHOP), one(rng, ZH_PLACE)),
        }
    }
}

/// The name of a person of the given gender ("M", "F" or "U").
pub(crate) fn person(rng: &mut Pcg64Mcg, gender: &str) -> String {
    let female = gender == "F" || (gender == "U" && rng.random::<bool>());
    let u: f64 = rng.random();
    let v: f64 = rng.random();
    if u < 0.55 {
        let first = one(rng, if female { EN_FIRST_F } else { EN_FIRST_M });
        let last = one(rng, EN_LAST);
        match v {
            v if v < 0.7 => format!("{first} {last}"),
            v if v < 0.85 => format!("{last}, {first}"),
            v if v < 0.97 => format!(
                "{first} {}. {last}",
                (b'A' + rng.random_range(0..26u8)) as char
            ),
            _ => format!("{first} \"{}\" {last}", one(rng, NICK)),
        }
    } else if u < 0.8 {
        let first = one(rng, if female { ES_FIRST_F } else { ES_FIRST_M });
        match v {
            v if v < 0.75 => format!("{first} {} {}", one(rng, ES_LAST), one(rng, ES_LAST)),
            v if v < 0.92 => format!("{} {}, {first}", one(rng, ES_LAST), one(rng, ES_LAST)),
            _ => format!(
                "{first} de la {}",
                one(rng, &["Peña", "Fuente", "Torre", "Cruz"])
            ),
        }
    } else {
        format!(
            "{}{}",
            one(rng, ZH_LAST),
            one(rng, if female { ZH_GIVEN_F } else { ZH_GIVEN_M })
        )
    }
}
