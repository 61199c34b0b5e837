set terminal pngcairo size 900,540 noenhanced
set output 'bench/results/static_consistency_pythia-mini.png'
set title 'Effective rank per layer: pythia-mini (held-out Pearson 0.972, cosine 0.9988)'
set xlabel 'layer'
set ylabel 'effective rank (mean over heads)'
set key top right
set grid
plot 'bench/results/static_consistency_pythia-mini.png.dat' using 1:($4-$5):($4+$5) with filledcurves fc rgb '#c6dbef' fs solid 0.6 title 'held-out mean +- std', \
     '' using 1:4 with lines lw 2 lc rgb '#2171b5' title 'held-out mean', \
     '' using 1:2:3 with yerrorlines lw 2 pt 7 ps 0.8 lc rgb '#cb181d' title 'static profile (calibration mean +- std)'
